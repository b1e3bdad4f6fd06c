//! A target group's session parameters and privileges on its page: what is
//! offered and allowed now, the engine's defaults, and for operators a form
//! (an empty field is the default). Session parameters reach new sessions
//! only; privileges apply at once.

use leptos::prelude::*;

use super::group::GroupActions;
use crate::components::{ActionError, FieldMessage, JsonForm};
use crate::model::privileges::{Privilege, PrivilegesView};
use crate::model::session_settings::{DigestPolicy, SessionSettings, SessionValues, SessionView};

/// A numeric setting: its field, its name, its unit, its value, what was chosen.
type Number =
    (&'static str, &'static str, &'static str, fn(&SessionValues) -> u32, fn(&SessionSettings) -> Option<u64>);

const NUMBERS: [Number; 5] = [
    (
        "max_recv_data_segment_length",
        "MaxRecvDataSegmentLength",
        "bytes",
        |v| v.max_recv_data_segment_length,
        |s| s.max_recv_data_segment_length,
    ),
    ("max_burst_length", "MaxBurstLength", "bytes", |v| v.max_burst_length, |s| s.max_burst_length),
    ("first_burst_length", "FirstBurstLength", "bytes", |v| v.first_burst_length, |s| s.first_burst_length),
    ("nop_in_interval", "NOP-In interval", "seconds idle before a ping", |v| v.nop_in_interval, |s| s.nop_in_interval),
    ("nop_in_timeout", "NOP-In timeout", "seconds to answer a ping", |v| v.nop_in_timeout, |s| s.nop_in_timeout),
];

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[component]
pub fn SessionSection(group: String, session: SessionView, a: GroupActions, writer: bool) -> impl IntoView {
    let (o, d, s) = (session.offered, session.defaults, session.settings);
    let flags = [
        ("immediate_data", "ImmediateData", o.immediate_data, d.immediate_data, s.immediate_data),
        ("initial_r2t", "InitialR2T", o.initial_r2t, d.initial_r2t, s.initial_r2t),
    ];
    let digests = [
        ("header_digest", "HeaderDigest", o.header_digest, d.header_digest, s.header_digest),
        ("data_digest", "DataDigest", o.data_digest, d.data_digest, s.data_digest),
    ];
    let rows = NUMBERS
        .iter()
        .map(|&(field, name, unit, read, _)| {
            view! { <tr data-setting=field><td>{name}</td><td>{read(&o)}" "<span class="muted small">{unit}</span></td><td>{read(&d)}</td></tr> }.into_any()
        })
        .chain(flags.iter().map(|&(field, name, now, default, _)| {
            view! { <tr data-setting=field><td>{name}</td><td>{yes_no(now)}</td><td>{yes_no(default)}</td></tr> }.into_any()
        }))
        .chain(digests.iter().map(|&(field, name, now, default, _)| {
            view! { <tr data-setting=field><td>{name}</td><td>{now.label()}</td><td>{default.label()}</td></tr> }.into_any()
        }))
        .collect_view();
    let form = writer.then(|| {
        let value = a.session.value();
        let numbers = NUMBERS
            .iter()
            .map(|&(field, name, _, read, chosen)| {
                let (default, chosen) = (read(&d), chosen(&s));
                view! {
                    <label>{name}
                        <input type="text" inputmode="numeric" name=field value=chosen.map(|v| v.to_string()).unwrap_or_default()
                            placeholder=format!("default {default}")/>
                        <FieldMessage value field=field/></label>
                }
            })
            .collect_view();
        let flags = flags
            .iter()
            .map(|&(field, name, _, default, chosen)| {
                view! {
                    <label>{name}
                        <select name=field>
                            <option value="" selected=chosen.is_none()>{format!("default ({})", yes_no(default))}</option>
                            <option value="yes" selected=chosen == Some(true)>"yes"</option>
                            <option value="no" selected=chosen == Some(false)>"no"</option>
                        </select>
                        <FieldMessage value field=field/></label>
                }
            })
            .collect_view();
        let digests = digests
            .iter()
            .map(|&(field, name, _, default, chosen)| {
                view! {
                    <label>{name}
                        <select name=field>
                            <option value="" selected=chosen.is_none()>{format!("default ({})", default.label())}</option>
                            {DigestPolicy::ALL.into_iter().map(|p| view! {
                                <option value=p.as_str() selected=chosen == Some(p)>{p.label()}</option>
                            }).collect_view()}
                        </select>
                        <FieldMessage value field=field/></label>
                }
            })
            .collect_view();
        view! {
            <JsonForm action=a.session attr:class="form form-grid" attr:id="set-session">
                <input type="hidden" name="group" value=group.clone()/>
                {numbers}{flags}{digests}
                <div class="form-actions"><button type="submit" class="btn">"Save session parameters"</button></div>
            </JsonForm>
            <ActionError value=a.session.value()/>
        }
    });
    view! {
        <section class="card">
            <h2>"Session parameters"</h2>
            <p class="muted">"What the group's targets offer when an initiator logs in (RFC 7143 login negotiation). A change reaches new sessions only: initiators logged in now keep what they negotiated until they log in again."</p>
            <div class="table-wrap"><table class="table" data-testid="session-table">
                <thead><tr><th>"Setting"</th><th>"Offered to new sessions"</th><th>"Default"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
            {form}
        </section>
    }
}

fn allowed(b: bool) -> &'static str {
    if b {
        "allowed"
    } else {
        "refused"
    }
}

#[component]
pub fn PrivilegesSection(group: String, privileges: PrivilegesView, a: GroupActions, writer: bool) -> impl IntoView {
    let (effective, defaults, settings) = (privileges.effective, privileges.defaults, privileges.settings);
    let rows = Privilege::ALL
        .into_iter()
        .map(|p| {
            view! {
                <tr data-privilege=p.field()>
                    <td>{p.command()}</td><td>{p.effect()}</td>
                    <td><strong>{allowed(effective.get(p))}</strong></td><td>{allowed(defaults.get(p))}</td>
                </tr>
            }
        })
        .collect_view();
    let form = writer.then(|| {
        let fields = Privilege::ALL
            .into_iter()
            .map(|p| {
                let chosen = settings.get(p);
                view! {
                    <label>{p.command()}
                        <select name=p.field()>
                            <option value="" selected=chosen.is_none()>{format!("default ({})", allowed(defaults.get(p)))}</option>
                            <option value="allow" selected=chosen == Some(true)>"allow"</option>
                            <option value="refuse" selected=chosen == Some(false)>"refuse"</option>
                        </select></label>
                }
            })
            .collect_view();
        view! {
            <JsonForm action=a.privileges attr:class="form form-grid" attr:id="set-privileges">
                <input type="hidden" name="group" value=group.clone()/>
                {fields}
                <div class="form-actions"><button type="submit" class="btn">"Save privileges"</button></div>
            </JsonForm>
            <ActionError value=a.privileges.value()/>
        }
    });
    view! {
        <section class="card">
            <h2>"Commands that reach every host"</h2>
            <p class="muted">"Whether the group's initiators may send commands that change what every other host sees. A change applies at once, to sessions already logged in too; an ACL rule may decide otherwise for its initiator."</p>
            <div class="table-wrap"><table class="table" data-testid="privileges-table">
                <thead><tr><th>"Command"</th><th>"What it does"</th><th>"Now"</th><th>"Default"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
            {form}
        </section>
    }
}
