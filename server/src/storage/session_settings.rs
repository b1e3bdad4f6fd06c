//! A group's session parameters between the API, the database and the
//! engine. The engine's `TargetLimits` holds the defaults and the ranges
//! (RFC 7143 §13 and its own bounds); this module only translates, so a
//! value the API accepts is one the engine accepts. What an administrator
//! chose is stored as a JSON object of the chosen settings only.

use portico_app::error::ApiError;
use portico_app::model::session_settings::{DigestPolicy, SessionSettings, SessionValues, SessionView};
use target_engine::config::{DigestPolicy as EngineDigest, TargetLimits};

use super::commands::{db, group_id, Effects, Tx};

fn digest(d: DigestPolicy) -> EngineDigest {
    match d {
        DigestPolicy::None => EngineDigest::None,
        DigestPolicy::Crc32c => EngineDigest::Crc32c,
        DigestPolicy::Either => EngineDigest::Either,
    }
}

fn digest_back(d: EngineDigest) -> DigestPolicy {
    match d {
        EngineDigest::None => DigestPolicy::None,
        EngineDigest::Crc32c => DigestPolicy::Crc32c,
        EngineDigest::Either => DigestPolicy::Either,
    }
}

/// A number as the engine holds it; beyond its type it is out of every range.
fn number(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// What the engine offers for `s`: the chosen settings over its defaults.
pub fn limits(s: &SessionSettings) -> TargetLimits {
    let d = TargetLimits::default();
    TargetLimits {
        max_recv_data_segment_length: s
            .max_recv_data_segment_length
            .map(number)
            .unwrap_or(d.max_recv_data_segment_length),
        max_burst_length: s.max_burst_length.map(number).unwrap_or(d.max_burst_length),
        first_burst_length: s.first_burst_length.map(number).unwrap_or(d.first_burst_length),
        immediate_data: s.immediate_data.unwrap_or(d.immediate_data),
        initial_r2t: s.initial_r2t.unwrap_or(d.initial_r2t),
        header_digest: s.header_digest.map(digest).unwrap_or(d.header_digest),
        data_digest: s.data_digest.map(digest).unwrap_or(d.data_digest),
        nop_in_interval: s.nop_in_interval.map(number).unwrap_or(d.nop_in_interval),
        nop_in_timeout: s.nop_in_timeout.map(number).unwrap_or(d.nop_in_timeout),
        ..d
    }
}

fn values(l: &TargetLimits) -> SessionValues {
    SessionValues {
        max_recv_data_segment_length: l.max_recv_data_segment_length,
        max_burst_length: l.max_burst_length,
        first_burst_length: l.first_burst_length,
        immediate_data: l.immediate_data,
        initial_r2t: l.initial_r2t,
        header_digest: digest_back(l.header_digest),
        data_digest: digest_back(l.data_digest),
        nop_in_interval: l.nop_in_interval,
        nop_in_timeout: l.nop_in_timeout,
    }
}

pub fn view(settings: SessionSettings) -> SessionView {
    SessionView { offered: values(&limits(&settings)), defaults: values(&TargetLimits::default()), settings }
}

/// The settings chosen in `s`, each alone over the defaults.
fn chosen_alone(s: &SessionSettings) -> Vec<(&'static str, SessionSettings)> {
    let one = SessionSettings::default;
    let mut out = Vec::new();
    if let Some(v) = s.max_recv_data_segment_length {
        out.push(("max_recv_data_segment_length", SessionSettings { max_recv_data_segment_length: Some(v), ..one() }));
    }
    if let Some(v) = s.max_burst_length {
        out.push(("max_burst_length", SessionSettings { max_burst_length: Some(v), ..one() }));
    }
    if let Some(v) = s.first_burst_length {
        out.push(("first_burst_length", SessionSettings { first_burst_length: Some(v), ..one() }));
    }
    if let Some(v) = s.nop_in_interval {
        out.push(("nop_in_interval", SessionSettings { nop_in_interval: Some(v), ..one() }));
    }
    if let Some(v) = s.nop_in_timeout {
        out.push(("nop_in_timeout", SessionSettings { nop_in_timeout: Some(v), ..one() }));
    }
    out
}

fn sentence(why: &str) -> String {
    let mut c = why.chars();
    match c.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

/// The engine's verdict on `s`, as a 422 with a message for each setting
/// that is wrong: each chosen number against its range first (alone over
/// the defaults, so every wrong one is told), then the settings together
/// (FirstBurstLength at most MaxBurstLength). A clash with a default is
/// told on the setting left at its default, which then needs a value.
pub fn check(s: &SessionSettings) -> Result<(), ApiError> {
    let mut errors = std::collections::BTreeMap::new();
    for (name, alone) in chosen_alone(s) {
        match limits(&alone).check() {
            Err((setting, why)) if setting == name => {
                errors.insert(name.to_string(), sentence(&why));
            }
            // Defaults are valid, so a setting alone that fails on another
            // clashes with that one's default: the check of all tells it.
            _ => {}
        }
    }
    if errors.is_empty() {
        if let Err((setting, why)) = limits(s).check() {
            let chosen = serde_json::to_value(s).ok().is_some_and(|v| !v[setting].is_null());
            let message =
                if chosen { sentence(&why) } else { format!("The default does not fit: it {why}. Choose a value.") };
            errors.insert(setting.to_string(), message);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// Stored settings; a damaged value reads as nothing chosen.
pub fn parse(json: &str) -> Result<SessionSettings, super::columns::Damaged> {
    super::columns::json("session settings", json)
}

/// "max_burst_length 65536, header_digest crc32c"; "defaults" when nothing is chosen.
fn describe(s: &SessionSettings) -> String {
    let v = serde_json::to_value(s).unwrap_or_default();
    let chosen: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{k} {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect();
    if chosen.is_empty() {
        "defaults".into()
    } else {
        chosen.join(", ")
    }
}

/// Replaces a group's session settings; new sessions get them.
pub(super) async fn set(tx: &mut Tx<'_>, group: &str, settings: SessionSettings) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    check(&settings)?;
    sqlx::query("UPDATE target_groups SET session_settings = ? WHERE id = ?")
        .bind(serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()))
        .bind(gid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects { detail: Some(describe(&settings)), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_chosen_is_the_engines_defaults() {
        assert_eq!(limits(&SessionSettings::default()), TargetLimits::default());
        let v = view(SessionSettings::default());
        assert_eq!(v.offered, v.defaults);
        assert!(check(&SessionSettings::default()).is_ok());
        assert_eq!(describe(&SessionSettings::default()), "defaults");
    }

    #[test]
    fn every_wrong_setting_gets_its_own_message() {
        let s = SessionSettings {
            max_recv_data_segment_length: Some(100),
            nop_in_timeout: Some(0),
            nop_in_interval: Some(u64::from(u32::MAX) + 7),
            ..Default::default()
        };
        let e = check(&s).unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(e.field("max_recv_data_segment_length"), Some("Must be between 512 and 1048576."));
        assert!(e.field("nop_in_timeout").unwrap().contains("between 1 and 3600"));
        assert!(e.field("nop_in_interval").unwrap().contains("between 1 and 3600"), "{e:?}");
    }

    #[test]
    fn first_burst_at_most_max_burst_is_told_on_the_setting_that_was_chosen() {
        let both =
            SessionSettings { max_burst_length: Some(4096), first_burst_length: Some(8192), ..Default::default() };
        assert!(check(&both).unwrap_err().field("first_burst_length").unwrap().contains("max_burst_length"));
        let max_only = SessionSettings { max_burst_length: Some(4096), ..Default::default() };
        let e = check(&max_only).unwrap_err();
        assert_eq!(
            e.field("first_burst_length"),
            Some("The default does not fit: it must not exceed max_burst_length. Choose a value.")
        );
        assert_eq!(e.field("max_burst_length"), None);
        let fine =
            SessionSettings { max_burst_length: Some(4096), first_burst_length: Some(4096), ..Default::default() };
        assert!(check(&fine).is_ok());
        assert_eq!(limits(&fine).max_burst_length, 4096);
    }

    #[test]
    fn chosen_settings_round_trip_through_storage() {
        let s = SessionSettings {
            header_digest: Some(DigestPolicy::Crc32c),
            immediate_data: Some(false),
            ..Default::default()
        };
        let stored = serde_json::to_string(&s).unwrap();
        assert_eq!(parse(&stored).unwrap(), s);
        assert_eq!(parse("{}").unwrap(), SessionSettings::default());
        assert_eq!(limits(&s).header_digest, EngineDigest::Crc32c);
        assert_eq!(describe(&s), "header_digest crc32c, immediate_data false");
    }
}
