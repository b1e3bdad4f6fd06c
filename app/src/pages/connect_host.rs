//! "Connect a host": the commands that log a host in to this group, for
//! Linux (open-iscsi with dm-multipath), VMware ESXi and Windows, with the
//! group's own portals, IQNs and CHAP users filled in. Secrets are never
//! shown: the commands name whose secret goes where.
//!
//! Multipathing: every target of the group exports every LUN; REPORT TARGET
//! PORT GROUPS marks one path Active/Optimized and the others Standby, so
//! each host is told to choose paths by ALUA (dm-multipath's `prio alua`,
//! ESXi's VMW_SATP_ALUA, Windows' MSDSM) for the engine's INQUIRY
//! identification, vendor `PORTICO`, product `VIRTUAL-DISK`.

use leptos::prelude::*;

use crate::model::storage::{ChapMode, ChapSetting, TargetGroupView, TargetView};

const VENDOR: &str = "PORTICO";
const PRODUCT: &str = "VIRTUAL-DISK";

/// (IQN, portal) for every portal of every target of the group.
fn paths(targets: &[TargetView]) -> Vec<(String, String)> {
    targets.iter().flat_map(|t| t.portals.iter().map(move |p| (t.iqn.clone(), p.clone()))).collect()
}

fn secret_of(user: &Option<String>) -> String {
    format!("<secret of the CHAP user {}>", user.as_deref().unwrap_or("?"))
}

/// The host part of a portal (`10.0.0.5:3260`, `[fd00::5]:3260`).
fn host_of(portal: &str) -> &str {
    let host = portal.rsplit_once(':').map_or(portal, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

pub fn linux(targets: &[TargetView], chap: &ChapSetting) -> String {
    let paths = paths(targets);
    let mut out = String::from("# Discover the group's targets through each portal\n");
    for (_, portal) in &paths {
        out += &format!("iscsiadm -m discovery -t sendtargets -p {portal}\n");
    }
    if chap.mode != ChapMode::None {
        out += "\n# CHAP, for each target\n";
        for t in targets {
            let set = |key: &str, value: &str| {
                format!("iscsiadm -m node -T {} -o update -n node.session.auth.{key} -v '{value}'\n", t.iqn)
            };
            out += &set("authmethod", "CHAP");
            out += &set("username", chap.user.as_deref().unwrap_or("?"));
            out += &set("password", &secret_of(&chap.user));
            if chap.mode == ChapMode::Mutual {
                out += &set("username_in", chap.mutual_user.as_deref().unwrap_or("?"));
                out += &set("password_in", &secret_of(&chap.mutual_user));
            }
        }
    }
    out += "\n# Log in on every path, and again at boot\n";
    for t in targets {
        out += &format!("iscsiadm -m node -T {} -o update -n node.startup -v automatic\n", t.iqn);
        out += &format!("iscsiadm -m node -T {} -l\n", t.iqn);
    }
    out += "\n# Then: multipath -ll shows one map per LUN, its paths grouped by ALUA state\n";
    out
}

pub fn multipath_conf() -> String {
    format!(
        "devices {{\n    device {{\n        vendor \"{VENDOR}\"\n        product \"{PRODUCT}\"\n        \
         path_grouping_policy group_by_prio\n        prio alua\n        hardware_handler \"1 alua\"\n        \
         path_checker tur\n        failback immediate\n        no_path_retry 12\n    }}\n}}\n"
    )
}

fn esxi_chap(chap: &ChapSetting) -> String {
    match chap.mode {
        ChapMode::None => String::new(),
        ChapMode::OneWay => format!(
            "esxcli iscsi adapter auth chap set --adapter=vmhba64 --direction=uni --level=required --authname={} --secret='{}'\n",
            chap.user.as_deref().unwrap_or("?"),
            secret_of(&chap.user)
        ),
        ChapMode::Mutual => format!(
            "esxcli iscsi adapter auth chap set --adapter=vmhba64 --direction=uni --level=required --authname={} --secret='{}'\n\
             esxcli iscsi adapter auth chap set --adapter=vmhba64 --direction=mutual --level=required --authname={} --secret='{}'\n",
            chap.user.as_deref().unwrap_or("?"),
            secret_of(&chap.user),
            chap.mutual_user.as_deref().unwrap_or("?"),
            secret_of(&chap.mutual_user)
        ),
    }
}

pub fn esxi(targets: &[TargetView], chap: &ChapSetting) -> String {
    let mut out = String::from(
        "# The software iSCSI adapter (its name, such as vmhba64, is in the list)\n\
         esxcli iscsi software set --enabled=true\nesxcli iscsi adapter list\n\n",
    );
    out += &format!(
        "# Paths chosen by ALUA: I/O goes to the Active/Optimized path\n\
         esxcli storage nmp satp rule add --satp=VMW_SATP_ALUA --vendor={VENDOR} --model={PRODUCT} \
         --psp=VMW_PSP_RR --claim-option=tpgs_on --description=\"Portico\"\n\n# Every portal of the group\n"
    );
    for (_, portal) in paths(targets) {
        out += &format!("esxcli iscsi adapter discovery sendtarget add --adapter=vmhba64 --address={portal}\n");
    }
    let chap = esxi_chap(chap);
    if !chap.is_empty() {
        out += "\n# CHAP\n";
        out += &chap;
    }
    out += "\nesxcli storage core adapter rescan --adapter=vmhba64\n";
    out
}

pub fn windows(targets: &[TargetView], chap: &ChapSetting) -> String {
    let mut out = format!(
        "# PowerShell as an administrator. MPIO (a restart may follow) and ALUA for Portico's disks\n\
         Install-WindowsFeature -Name Multipath-IO\n\
         New-MSDSMSupportedHW -VendorId {VENDOR} -ProductId {PRODUCT}\n\
         Set-Service -Name MSiSCSI -StartupType Automatic; Start-Service MSiSCSI\n\n# Every portal of the group\n"
    );
    let mut hosts: Vec<&str> = Vec::new();
    let paths = paths(targets);
    for (_, portal) in &paths {
        let host = host_of(portal);
        if !hosts.contains(&host) {
            hosts.push(host);
            let port = portal.rsplit_once(':').map_or("3260", |(_, p)| p);
            out += &format!("New-IscsiTargetPortal -TargetPortalAddress {host} -TargetPortalPortNumber {port}\n");
        }
    }
    let auth = match chap.mode {
        ChapMode::None => String::new(),
        ChapMode::OneWay => format!(
            " -AuthenticationType ONEWAYCHAP -ChapUsername {} -ChapSecret '{}'",
            chap.user.as_deref().unwrap_or("?"),
            secret_of(&chap.user)
        ),
        ChapMode::Mutual => format!(
            " -AuthenticationType MUTUALCHAP -ChapUsername {} -ChapSecret '{}'",
            chap.user.as_deref().unwrap_or("?"),
            secret_of(&chap.user)
        ),
    };
    if chap.mode == ChapMode::Mutual {
        out += &format!(
            "\n# The secret the target answers with (mutual CHAP)\nSet-IscsiChapSecret -ChapSecret '{}'\n",
            secret_of(&chap.mutual_user)
        );
    }
    out += "\n# One persistent, multipath login per path\n";
    for (iqn, portal) in &paths {
        out += &format!(
            "Connect-IscsiTarget -NodeAddress {iqn} -TargetPortalAddress {} -IsPersistent $true -IsMultipathEnabled $true{auth}\n",
            host_of(portal)
        );
    }
    out
}

/// The card on the group page.
#[component]
pub fn ConnectHost(g: TargetGroupView) -> impl IntoView {
    let empty = g.targets.is_empty();
    view! {
        <section class="card" data-testid="connect-host">
            <h2>"Connect a host"</h2>
            {if empty {
                view! { <p class="empty">"Add a target first: hosts log in through its portals."</p> }.into_any()
            } else {
                view! {
                    <p class="muted">"Commands for this group's portals and CHAP settings. Put each CHAP user's secret where its name is shown; secrets are not shown here. If discovery asks for CHAP (the iSCSI page), the host needs those credentials for discovery too."</p>
                    <details open>
                        <summary>"Linux (open-iscsi)"</summary>
                        <pre class="commands">{linux(&g.targets, &g.chap)}</pre>
                        <p class="muted">"In /etc/multipath.conf, then systemctl reload multipathd:"</p>
                        <pre class="commands">{multipath_conf()}</pre>
                    </details>
                    <details>
                        <summary>"VMware ESXi (esxcli)"</summary>
                        <pre class="commands">{esxi(&g.targets, &g.chap)}</pre>
                    </details>
                    <details>
                        <summary>"Windows (PowerShell)"</summary>
                        <pre class="commands">{windows(&g.targets, &g.chap)}</pre>
                    </details>
                }.into_any()
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<TargetView> {
        let target = |node: &str, portal: &str, tpg| TargetView {
            node: node.into(),
            iqn: format!("iqn.2026-11.local.portico:g1.{node}"),
            portals: vec![portal.into()],
            tpg,
            paths: Vec::new(),
        };
        vec![target("n1", "10.0.0.5:3260", 1), target("n2", "[fd00::6]:3260", 2)]
    }

    #[test]
    fn every_portal_and_target_is_in_the_commands() {
        let (t, chap) = (targets(), ChapSetting::default());
        let linux = linux(&t, &chap);
        assert!(linux.contains("iscsiadm -m discovery -t sendtargets -p 10.0.0.5:3260"));
        assert!(linux.contains("iscsiadm -m discovery -t sendtargets -p [fd00::6]:3260"));
        assert!(linux.contains("iscsiadm -m node -T iqn.2026-11.local.portico:g1.n2 -l"));
        assert!(!linux.contains("CHAP"));
        assert!(esxi(&t, &chap).contains("--address=[fd00::6]:3260"));
        let windows = windows(&t, &chap);
        assert!(windows.contains("New-IscsiTargetPortal -TargetPortalAddress fd00::6 -TargetPortalPortNumber 3260"));
        assert!(windows.contains(
            "Connect-IscsiTarget -NodeAddress iqn.2026-11.local.portico:g1.n1 -TargetPortalAddress 10.0.0.5"
        ));
        assert!(multipath_conf().contains("prio alua"));
    }

    #[test]
    fn chap_users_are_named_and_their_secrets_never_shown() {
        let chap = ChapSetting { mode: ChapMode::Mutual, user: Some("esx".into()), mutual_user: Some("array".into()) };
        let t = targets();
        let linux = linux(&t, &chap);
        assert!(linux.contains("node.session.auth.username -v 'esx'"));
        assert!(linux.contains("node.session.auth.password_in -v '<secret of the CHAP user array>'"));
        assert!(esxi(&t, &chap).contains("--direction=mutual --level=required --authname=array"));
        let windows = windows(&t, &chap);
        assert!(windows.contains("-AuthenticationType MUTUALCHAP -ChapUsername esx"));
        assert!(windows.contains("Set-IscsiChapSecret -ChapSecret '<secret of the CHAP user array>'"));
    }
}
