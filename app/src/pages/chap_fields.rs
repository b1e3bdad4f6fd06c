//! The fields that choose CHAP by existing CHAP users: a mode and, for
//! one-way and mutual, the user initiators log in as and the user the
//! target answers as. Shared by discovery, groups and ACL rules, whose
//! server functions read `chap_mode`, `chap_user` and `mutual_user`.

use leptos::prelude::*;

use crate::components::FieldMessage;
use crate::error::ApiError;
use crate::model::storage::{ChapMode, ChapSetting};

/// `users`: the names of the CHAP users to choose from. `current`: the
/// setting shown as chosen. With `inherit` the first mode
/// is `group` (the group's CHAP, labelled `inherit`) and `current: None`
/// selects it; without, the first mode is `none`.
#[component]
pub fn ChapFields<T, V>(
    value: V,
    users: Vec<String>,
    current: Option<ChapSetting>,
    #[prop(optional)] inherit: Option<&'static str>,
) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, ApiError>>> + Copy + Send + Sync + 'static,
{
    let mode = current.as_ref().map(|c| c.mode);
    let first = match inherit {
        Some(label) => view! { <option value="group" selected=mode.is_none()>{label}</option> }.into_any(),
        None => view! { <option value="none" selected=mode == Some(ChapMode::None)>"none"</option> }.into_any(),
    };
    let user = current.as_ref().and_then(|c| c.user.clone());
    let mutual = current.as_ref().and_then(|c| c.mutual_user.clone());
    view! {
        <label>"CHAP"
            <select name="chap_mode">
                {first}
                <option value="one-way" selected=mode == Some(ChapMode::OneWay)>"one-way"</option>
                <option value="mutual" selected=mode == Some(ChapMode::Mutual)>"mutual"</option>
            </select>
            <FieldMessage value field="chap.mode"/></label>
        <label>"CHAP user (initiator)"<UserSelect name="chap_user" users=users.clone() chosen=user/>
            <FieldMessage value field="chap.user"/></label>
        <label>"Mutual CHAP user (target)"<UserSelect name="mutual_user" users chosen=mutual/>
            <FieldMessage value field="chap.mutual_user"/></label>
    }
}

#[component]
fn UserSelect(name: &'static str, users: Vec<String>, chosen: Option<String>) -> impl IntoView {
    view! {
        <select name=name>
            <option value="">"—"</option>
            {users.into_iter().map(|u| {
                let selected = chosen.as_deref() == Some(u.as_str());
                let label = u.clone();
                view! { <option value=u selected=selected>{label}</option> }
            }).collect_view()}
        </select>
    }
}
