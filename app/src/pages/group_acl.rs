//! A target group's ACL on its page: whether it is on, each rule's
//! initiator, LUNs, own CHAP and privileges, and for operators the forms to
//! add, change and remove rules. A rule's own CHAP replaces the group's for
//! its initiator, so the group's secret does not open that initiator's
//! LUNs; what a rule does not set follows the group.

use leptos::prelude::*;

use super::chap_fields::ChapFields;
use super::group::GroupActions;
use crate::components::{ActionError, Badge, FieldMessage, JsonForm};
use crate::model::privileges::{Privilege, PrivilegeSettings, PrivilegeValues};
use crate::model::storage::{AclRuleView, TargetGroupView};
use crate::storage_fns::{DeleteAclRule, SetGroupAcl};

#[component]
pub fn AclSection(g: TargetGroupView, a: GroupActions, users: Vec<String>, writer: bool) -> impl IntoView {
    let name = g.name.clone();
    let group_privileges = g.privileges.effective;
    let badge = if g.acl_enabled {
        view! { <Badge kind="ok" text="on"/> }
    } else {
        view! { <Badge kind="muted" text="off — every initiator may log in"/> }
    };
    let toggle = writer.then(|| {
        let group = name.clone();
        let enabled = g.acl_enabled;
        view! {
            <button class="btn btn-small" on:click=move |_| { a.acl_enabled.dispatch(SetGroupAcl { group: group.clone(), enabled: !enabled }); }>
                {if enabled { "Turn ACL off" } else { "Turn ACL on" }}
            </button>
        }
    });
    let rows = g
        .acl
        .iter()
        .map(|r| view! { <AclRow group=name.clone() rule=r.clone() group_privileges a users=users.clone() writer/> })
        .collect_view();
    let add = writer.then(|| {
        let group = name.clone();
        let users = users.clone();
        view! {
            <JsonForm action=a.add_acl attr:class="form form-grid" attr:id="add-acl">
                <input type="hidden" name="group" value=group/>
                <label>"Initiator IQN"<input type="text" name="initiator" required/>
                    <FieldMessage value=a.add_acl.value() field="initiator"/></label>
                <label>"Alias"<input type="text" name="alias"/>
                    <FieldMessage value=a.add_acl.value() field="alias"/></label>
                <label>"LUNs (empty: all)"<input type="text" name="luns" placeholder="0, 1"/>
                    <FieldMessage value=a.add_acl.value() field="luns"/></label>
                <ChapFields value=a.add_acl.value() users current=None inherit="the group's"/>
                <div class="form-actions"><button type="submit" class="btn">"Add rule"</button></div>
            </JsonForm>
            <ActionError value=a.add_acl.value()/>
        }
    });
    view! {
        <section class="card">
            <h2>"Access control " {badge}</h2>
            {toggle}
            <p class="muted">"With ACL on, only the initiators listed here may log in (and discover the group's targets), each seeing its LUNs. An initiator's own CHAP replaces the group's for it: a host that knows the group's secret cannot log in under its name. A rule's own settings apply while ACL is on."</p>
            <ActionError value=a.acl_access.value()/>
            <div class="table-wrap"><table class="table" data-testid="acl-table">
                <thead><tr><th>"Initiator"</th><th>"Alias"</th><th>"LUNs"</th><th>"CHAP"</th><th>"Privileges"</th><th class="actions-col"></th></tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
            {add}
        </section>
    }
}

/// The privileges a rule sets, for people; "the group's" when it sets none.
fn privileges_text(own: Option<&PrivilegeSettings>, group: PrivilegeValues) -> String {
    let Some(own) = own.filter(|p| !p.is_empty()) else { return "the group's".into() };
    let mine = group.with(own);
    Privilege::ALL
        .into_iter()
        .filter(|p| own.get(*p).is_some())
        .map(|p| format!("{} {}", p.command(), if mine.get(p) { "allowed" } else { "refused" }))
        .collect::<Vec<_>>()
        .join("; ")
}

#[component]
fn AclRow(
    group: String,
    rule: AclRuleView,
    group_privileges: PrivilegeValues,
    a: GroupActions,
    users: Vec<String>,
    writer: bool,
) -> impl IntoView {
    let initiator = rule.initiator.clone();
    let shown = rule.luns.as_ref().map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    let luns = if writer {
        let (group, initiator) = (group.clone(), initiator.clone());
        view! {
            <JsonForm action=a.update_acl attr:class="form inline-form">
                <input type="hidden" name="group" value=group/>
                <input type="hidden" name="initiator" value=initiator/>
                <input type="text" name="luns" value=shown.unwrap_or_default() placeholder="all" size="8" aria-label="Allowed LUNs"/>
                <button type="submit" class="btn btn-small">"Set LUNs"</button>
            </JsonForm>
        }
        .into_any()
    } else {
        view! { <span>{shown.unwrap_or_else(|| "all".into())}</span> }.into_any()
    };
    let chap = match &rule.chap {
        None => "the group's".to_string(),
        Some(c) => {
            let mut t = format!("own, {} as {}", c.mode.as_str(), c.user.clone().unwrap_or_default());
            if let Some(m) = &c.mutual_user {
                t.push_str(&format!("; target answers as {m}"));
            }
            t
        }
    };
    let privileges = privileges_text(rule.privileges.as_ref(), group_privileges);
    let actions = writer.then(|| {
        let (group, initiator) = (group.clone(), initiator.clone());
        let own = rule.privileges.unwrap_or_default();
        let remove = {
            let (group, initiator) = (group.clone(), initiator.clone());
            move |_| {
                if window().confirm_with_message(&format!("Remove the rule for {initiator}?")).unwrap_or(false) {
                    a.delete_acl.dispatch(DeleteAclRule { group: group.clone(), initiator: initiator.clone() });
                }
            }
        };
        let selects = Privilege::ALL
            .into_iter()
            .map(|p| {
                let chosen = own.get(p);
                let inherited = if group_privileges.get(p) { "allowed" } else { "refused" };
                view! {
                    <label>{p.command()}
                        <select name=p.field()>
                            <option value="" selected=chosen.is_none()>{format!("the group's ({inherited})")}</option>
                            <option value="allow" selected=chosen == Some(true)>"allow"</option>
                            <option value="refuse" selected=chosen == Some(false)>"refuse"</option>
                        </select></label>
                }
            })
            .collect_view();
        view! {
            <details class="rule-settings">
                <summary class="btn btn-small">"Access"</summary>
                <JsonForm action=a.acl_access attr:class="form">
                    <input type="hidden" name="group" value=group/>
                    <input type="hidden" name="initiator" value=initiator/>
                    <ChapFields value=a.acl_access.value() users current=rule.chap.clone() inherit="the group's"/>
                    {selects}
                    <button type="submit" class="btn btn-small">"Save access"</button>
                </JsonForm>
            </details>
            <button class="btn btn-small btn-danger" on:click=remove>"Remove"</button>
        }
    });
    view! {
        <tr data-initiator=rule.initiator.clone()>
            <td><code>{rule.initiator.clone()}</code></td>
            <td>{rule.alias.clone().unwrap_or_default()}</td>
            <td>{luns}</td>
            <td data-testid="acl-chap">{chap}</td>
            <td data-testid="acl-privileges">{privileges}</td>
            <td class="actions-col"><div class="row-actions">{actions}</div></td>
        </tr>
    }
}
