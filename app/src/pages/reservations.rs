//! The SCSI reservations clustered hosts hold on each volume, refreshed
//! every five seconds: which initiators registered, who holds the
//! reservation and of what type.

use leptos::prelude::*;

use crate::chart::use_ticker;
use crate::components::{Badge, ErrorBanner};
use crate::model::storage::{reservation_label, RegistrationView, VolumeReservations};
use crate::storage_fns::list_reservations;

#[component]
pub fn ReservationsCard() -> impl IntoView {
    let tick = use_ticker(5);
    let reservations = Resource::new(move || tick.get(), |_| list_reservations());
    view! {
        <section class="card" data-testid="reservations">
            <h2>"Reservations"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match reservations.await {
                        Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                        Ok(list) => {
                            let held: Vec<VolumeReservations> = list
                                .into_iter()
                                .filter(|r| !r.registrations.is_empty() || r.spc2_holder.is_some())
                                .collect();
                            if held.is_empty() {
                                view! { <p class="empty">"No initiator has registered or reserved a volume."</p> }.into_any()
                            } else {
                                held.into_iter().map(|r| view! { <VolumeReservationTable r/> }).collect_view().into_any()
                            }
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn VolumeReservationTable(r: VolumeReservations) -> impl IntoView {
    let summary = match (&r.reservation, &r.spc2_holder) {
        (Some(kind), _) => format!("Reserved: {}", reservation_label(kind)),
        (None, Some(holder)) => format!("Reserved with RESERVE by {holder}"),
        (None, None) => "Registered, not reserved".to_string(),
    };
    let persistence = if r.persistent { "kept across restarts" } else { "lost on restart" };
    view! {
        <h3 class="small">{r.volume.clone()}</h3>
        <p class="muted small">{summary} " · " {persistence} " · generation " {r.generation}</p>
        {(!r.registrations.is_empty()).then(|| view! {
            <div class="table-wrap"><table class="table">
                <thead><tr><th>"Initiator"</th><th>"Session (ISID)"</th><th>"Target port"</th><th>"Key"</th><th></th></tr></thead>
                <tbody>{r.registrations.into_iter().map(|g| view! { <RegistrationRow g/> }).collect_view()}</tbody>
            </table></div>
        })}
    }
}

#[component]
fn RegistrationRow(g: RegistrationView) -> impl IntoView {
    view! {
        <tr>
            <td><code class="small">{g.initiator}</code></td>
            <td>{g.isid.map(|i| view! { <code class="small">{i}</code> }.into_any()).unwrap_or_else(|| "all".into_any())}</td>
            <td>{g.relative_target_port.map(|p| p.to_string()).unwrap_or_else(|| "all".into())}</td>
            <td><code class="small">{g.key}</code></td>
            <td>{g.holder.then(|| view! { <Badge kind="ok" text="holder"/> })}</td>
        </tr>
    }
}
