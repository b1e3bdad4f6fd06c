//! Small live charts of a volume's activity (inline SVG, no library).

use leptos::prelude::*;

use crate::components::ErrorBanner;
use crate::model::storage::VolumeActivity;
use crate::storage_fns::get_volume_activity;

const W: f64 = 320.0;
const H: f64 = 64.0;

/// SVG polyline points for `values`, scaled to the chart's box.
pub fn points(values: &[f64], max: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let step = if values.len() > 1 { W / (values.len() - 1) as f64 } else { 0.0 };
    let max = if max > 0.0 { max } else { 1.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, H - (v / max).clamp(0.0, 1.0) * (H - 4.0) - 2.0))
        .collect::<Vec<_>>()
        .join(" ")
}

#[component]
fn Sparkline(title: &'static str, unit: &'static str, series: Vec<(&'static str, Vec<f64>)>) -> impl IntoView {
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
    let last: Vec<String> =
        series.iter().map(|(name, v)| format!("{name} {:.1}", v.last().copied().unwrap_or(0.0))).collect();
    view! {
        <figure class="spark">
            <figcaption><strong>{title}</strong> " " <span class="muted">{last.join(" · ")} " " {unit}</span></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label=title>
                <line x1="0" y1=H - 1.0 x2=W y2=H - 1.0 class="spark-axis"/>
                {series.into_iter().enumerate().map(|(i, (_, v))| {
                    view! { <polyline points=points(&v, max) class=format!("spark-line spark-line-{i}")/> }
                }).collect_view()}
            </svg>
            <div class="spark-scale muted small">"max " {format!("{max:.1}")} " " {unit}</div>
        </figure>
    }
}

#[component]
fn ActivityCharts(a: VolumeActivity) -> impl IntoView {
    let iops: Vec<f64> = a.samples.iter().map(|s| s.iops).collect();
    let read: Vec<f64> = a.samples.iter().map(|s| s.read_mbps).collect();
    let write: Vec<f64> = a.samples.iter().map(|s| s.write_mbps).collect();
    let minutes = (a.samples.len() as u32 * a.interval_seconds).div_ceil(60);
    view! {
        <div class="activity" data-volume-activity=a.volume.clone()>
            <Sparkline title="IOPS" unit="/s" series=vec![("all", iops)]/>
            <Sparkline title="Throughput" unit="MB/s" series=vec![("read", read), ("write", write)]/>
            <p class="muted small">"last " {minutes} " min · " {a.commands} " commands, " {a.errors} " errors since start"</p>
        </div>
    }
}

/// A counter that goes up every `seconds` in the browser (never on the
/// server), for resources that refresh themselves; stops with its owner.
pub fn use_ticker(seconds: u64) -> RwSignal<u32> {
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        let handle =
            set_interval_with_handle(move || tick.update(|t| *t += 1), std::time::Duration::from_secs(seconds));
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    });
    tick
}

/// A volume's activity, refreshed every five seconds without reloading the page.
#[component]
pub fn LiveActivity(volume: String) -> impl IntoView {
    let tick = use_ticker(5);
    let activity = Resource::new(move || (volume.clone(), tick.get()), |(v, _)| get_volume_activity(v));
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match activity.await {
                    Ok(a) => view! { <ActivityCharts a/> }.into_any(),
                    Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_fill_the_box() {
        assert_eq!(points(&[], 1.0), "");
        let p = points(&[0.0, 10.0], 10.0);
        assert_eq!(p, "0.0,62.0 320.0,2.0");
        assert_eq!(points(&[5.0], 0.0), "0.0,2.0", "a zero maximum does not divide by zero");
    }
}
