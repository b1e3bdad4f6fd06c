//! A logical unit (SAM-5 §4.5) and the path every command takes through it:
//! LUN lookup, CDB decoding, unit attention (SAM-5 §5.14), the pre-execution
//! checks, execution, and the one place a [`SenseReason`] becomes sense data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use super::alua::{self, AluaState, AluaTable};
use super::cdb::{Cdb, UaPolicy};
use super::forward::{ForwardedCommand, UnitForwarder};
use super::latency::{LatencyHistogram, LatencyRecorder};
use super::mode::ModeState;
use super::nexus::AbortMailbox;
use super::sense::{SenseReason, UnitAttention};
use super::ua::UaTable;
use super::{cdb, sbc, spc};
use super::{LuSpec, LunMap, Nexus, NexusId, ScsiCommand, ScsiResponse, ScsiStatus};
use crate::backend::{BackendError, BlockBackend};

/// A snapshot of one unit's activity for the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LuCounters {
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Commands that ended in CHECK CONDITION, unit attentions not counted.
    pub errors: u64,
    /// How long each command took, from dispatch to status.
    pub latency: LatencyHistogram,
}

#[derive(Debug, Default)]
struct Counters {
    commands: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    errors: AtomicU64,
    latency: LatencyRecorder,
}

/// State shared by all nexuses that changes at run time.
#[derive(Debug, Default)]
pub(crate) struct LuState {
    pub ua: UaTable,
    pub mode: ModeState,
    /// The volume's write-cache policy, which decides WCE.
    pub write_cache: super::mode::WriteCache,
    pub pr: super::pr::PrState,
    pub xcopy: super::xcopy::CopyLog,
    pub alua: AluaTable,
}

/// One logical unit as exported through one or more targets.
#[derive(Debug)]
pub struct LogicalUnit {
    pub spec: LuSpec,
    pub(crate) backend: Arc<dyn BlockBackend>,
    counters: Counters,
    state: Mutex<LuState>,
    /// Medium access takes it shared; COMPARE AND WRITE takes it alone so
    /// its read-compare-write is atomic (SBC-3 §5.2).
    pub(crate) io: tokio::sync::RwLock<()>,
    /// Where the unit's state is saved (see [`super::unit_state`]).
    pub(super) state_file: std::sync::OnceLock<std::path::PathBuf>,
    /// Changes of saved state run one at a time, each saved before it is
    /// committed (see [`super::unit_state`]).
    pub(super) state_changes: tokio::sync::Mutex<()>,
    /// The abort mailbox of every nexus that has addressed the unit.
    nexuses: Mutex<Vec<(NexusId, Weak<AbortMailbox>)>>,
    /// Where reservation commands go while this node does not serve the
    /// volume (see [`super::forward`]).
    forwarder: std::sync::OnceLock<Arc<dyn UnitForwarder>>,
}

/// A successful command's status and Data-In.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: ScsiStatus,
    pub data: Bytes,
}

impl Reply {
    pub fn good() -> Self {
        Reply { status: ScsiStatus::Good, data: Bytes::new() }
    }

    pub fn bytes(data: Bytes) -> Self {
        Reply { status: ScsiStatus::Good, data }
    }

    /// Parameter data cut to the initiator's ALLOCATION LENGTH (SPC-4 §4.2.5.6).
    pub fn data(mut v: Vec<u8>, alloc_len: u32) -> Self {
        v.truncate(alloc_len as usize);
        Reply { status: ScsiStatus::Good, data: Bytes::from(v) }
    }
}

impl LogicalUnit {
    pub fn new(spec: LuSpec, backend: Arc<dyn BlockBackend>) -> Arc<Self> {
        Arc::new(LogicalUnit {
            spec,
            backend,
            counters: Counters::default(),
            state: Mutex::new(LuState::default()),
            io: tokio::sync::RwLock::new(()),
            state_file: std::sync::OnceLock::new(),
            state_changes: tokio::sync::Mutex::new(()),
            nexuses: Mutex::default(),
            forwarder: std::sync::OnceLock::new(),
        })
    }

    /// The cluster's forwarder, if the unit has one (`portico serve`).
    pub(crate) fn cluster_forwarder(&self) -> Option<Arc<dyn UnitForwarder>> {
        self.forwarder.get().cloned()
    }

    /// Sends this unit's commands to the node that serves the volume
    /// whenever this node does not (set once, as the unit opens): the
    /// reservation commands through any port, and through an
    /// active/non-optimized port every command answered with the data
    /// (see [`super::forward`]).
    pub fn forward_to_serving_node(&self, forwarder: Arc<dyn UnitForwarder>) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Where a command goes now, if not to this unit.
    fn forwarding(&self) -> Option<&Arc<dyn UnitForwarder>> {
        self.forwarder.get().filter(|_| self.spec.remote || self.backend.serving().is_err())
    }

    /// Sends a command that came on `nexus` to the node that serves the
    /// volume. A GOOD answer means it ran there: a write is on the serving
    /// node and its in-sync replicas.
    async fn forward(
        &self,
        to: &Arc<dyn UnitForwarder>,
        nexus: &Nexus,
        cdb: &Cdb,
        cmd: &ScsiCommand,
    ) -> Result<Reply, SenseReason> {
        if cdb.is_persistent_reservation_command() && cmd.data_out.len() > super::forward::MAX_FORWARDED_PARAMETERS {
            return Err(SenseReason::InsufficientRegistrationResources);
        }
        if cmd.data_out.len() > super::forward::MAX_FORWARDED_DATA {
            // More than the serving node would take in one command (its
            // MAXIMUM TRANSFER LENGTH): refused as it would refuse it.
            return Err(SenseReason::InvalidFieldInCdb(super::sense::Field::byte(0)));
        }
        let command = ForwardedCommand {
            volume: self.spec.name.clone(),
            nexus: (&nexus.id).into(),
            cdb: cmd.cdb.to_vec(),
            data: cmd.data_out.to_vec(),
        };
        match to.forward(command).await {
            Ok(outcome) => outcome.map(|reply| Reply {
                status: if reply.status == ScsiStatus::ConditionMet as u8 {
                    ScsiStatus::ConditionMet
                } else {
                    ScsiStatus::Good
                },
                data: Bytes::from(reply.data),
            }),
            Err(why) => {
                tracing::warn!(volume = %self.spec.name, "cannot forward a command to the node serving the volume: {why}");
                Err(SenseReason::AluaStandby)
            }
        }
    }

    /// A command forwarded from another node's port, for the I_T nexus
    /// `id` there: run here as if it came on that nexus, with the access
    /// checks of this node's view of that port group, if this node serves
    /// the volume (else NOT READY, transitioning: the sender's view of the
    /// placement is behind). Unit attentions are the sending node's to
    /// report; the commands a node answers itself are never forwarded.
    pub(crate) async fn run_forwarded(&self, id: NexusId, cdb: &[u8], data: Bytes) -> Result<Reply, SenseReason> {
        self.backend.serving().map_err(super::sbc::write_error)?;
        let decoded = Cdb::decode(cdb)?;
        if alua::answered_by_every_node(&decoded) {
            return Err(SenseReason::InvalidOpcode);
        }
        if !self.spec.reservations && decoded.is_reservation_command() {
            return Err(SenseReason::InvalidOpcode);
        }
        let nexus = Nexus::new(id);
        self.check_access(&nexus.id, &decoded)?;
        self.execute(&LunMap::new(), &nexus, decoded, &data).await
    }

    pub fn backend(&self) -> &Arc<dyn BlockBackend> {
        &self.backend
    }

    /// Capacity in logical blocks.
    pub fn blocks(&self) -> u64 {
        self.backend.size() / u64::from(self.spec.block_size)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, LuState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grows the unit to `new_bytes` and, if its capacity changed, raises
    /// CAPACITY DATA HAS CHANGED for every nexus (SBC-3 §4.9).
    pub async fn resize(&self, new_bytes: u64) -> Result<(), BackendError> {
        let before = self.blocks();
        self.backend.resize(new_bytes).await?;
        if self.blocks() != before {
            self.state().ua.raise_all(UnitAttention::CapacityChanged);
        }
        Ok(())
    }

    pub fn counters(&self) -> LuCounters {
        LuCounters {
            commands: self.counters.commands.load(Ordering::Relaxed),
            bytes_read: self.counters.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.counters.bytes_written.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            latency: self.counters.latency.read(),
        }
    }

    /// Remembers the abort mailbox of a nexus that addressed the unit.
    pub(crate) fn attach(&self, id: &NexusId, mailbox: &Arc<AbortMailbox>) {
        let mut list = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(_, m)| m.strong_count() > 0);
        list.push((id.clone(), Arc::downgrade(mailbox)));
    }

    /// Asks the transport to abort the tasks on this unit of every nexus
    /// `pick` selects (they end without a response, as with ABORT TASK SET).
    pub(crate) fn abort_tasks_where(&self, pick: impl Fn(&NexusId) -> bool) {
        let list = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        for (id, mailbox) in list.iter() {
            if let (true, Some(m)) = (pick(id), mailbox.upgrade()) {
                m.request(self);
            }
        }
    }

    /// LOGICAL UNIT RESET received on nexus `from` (SAM-5 §6.3.3): mode
    /// parameters return to their saved values, which are the current ones
    /// (every change is saved), an SPC-2 reservation ends, and every I_T
    /// nexus, the requester's included, gets BUS DEVICE RESET FUNCTION
    /// OCCURRED (libiscsi's MultipathIO.Reset checks each path). Persistent
    /// reservations survive. The requester's own session aborts its tasks;
    /// those of every other nexus are aborted through their transports.
    pub fn reset(&self, from: &NexusId) {
        {
            let mut st = self.state();
            st.pr.drop_spc2(None);
            // Make sure the requester is known, so that it hears of the reset too.
            st.ua.raise(from, UnitAttention::BusDeviceReset);
            st.ua.raise_all(UnitAttention::BusDeviceReset);
        }
        self.abort_tasks_where(|id| id != from);
    }

    /// LOGICAL UNIT RESET received through another node's port (see
    /// [`super::forward`]): as [`Self::reset`], for every nexus here.
    pub fn reset_from_elsewhere(&self) {
        {
            let mut st = self.state();
            st.pr.drop_spc2(None);
            st.ua.raise_all(UnitAttention::BusDeviceReset);
        }
        self.abort_tasks_where(|_| true);
    }

    /// I_T nexus loss (the session ended): the nexus's unit attentions are
    /// forgotten (a later session with the same identity starts with POWER
    /// ON, RESET) and an SPC-2 reservation it held ends. Dropping a [`Nexus`]
    /// calls this for every unit it sent commands to.
    pub fn forget_nexus(&self, id: &NexusId) {
        let mut st = self.state();
        st.ua.forget(id);
        st.pr.drop_spc2(Some(id));
    }

    pub(crate) fn mode(&self) -> ModeState {
        self.state().mode
    }

    pub(crate) fn count_read(&self, n: u64) {
        self.counters.bytes_read.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_written(&self, n: u64) {
        self.counters.bytes_written.fetch_add(n, Ordering::Relaxed);
    }

    /// Reports (and clears) the oldest unit attention for `nexus`: the unit's
    /// own first, then the nexus's inventory change.
    pub(crate) fn take_unit_attention(&self, nexus: &Nexus) -> Option<UnitAttention> {
        if let Some(ua) = self.state().ua.take(&nexus.id) {
            return Some(ua);
        }
        let mut ns = nexus.lock();
        std::mem::take(&mut ns.luns_changed).then_some(UnitAttention::ReportedLunsChanged)
    }

    /// A snapshot of the unit's reservations.
    pub fn reservations(&self) -> super::ReservationStatus {
        self.state().pr.status()
    }

    /// The asymmetric access state of target port group `tpg` for this unit.
    pub fn alua_state(&self, tpg: u16) -> AluaState {
        self.state().alua.state(tpg)
    }

    /// Sets the asymmetric access state of target port group `tpg` (an
    /// implicit transition, SPC-4 §5.16.2.6); if it changed, every I_T
    /// nexus of the unit gets ASYMMETRIC ACCESS STATE CHANGED. Sessions
    /// are not disturbed otherwise. Returns whether the state changed.
    pub fn set_alua_state(&self, tpg: u16, state: AluaState) -> bool {
        let mut st = self.state();
        let changed = st.alua.set_state(tpg, state);
        if changed {
            st.ua.raise_all(UnitAttention::AsymmetricAccessStateChanged);
        }
        changed
    }

    /// Takes the place of `old`, the same logical unit opened before (its
    /// volume reopened here as primary or replica when its placement
    /// changed): the nexuses `old` knew get ASYMMETRIC ACCESS STATE CHANGED
    /// (SPC-4 §5.16.2.6: their access moved), with what was pending for
    /// them, rather than POWER ON, RESET.
    pub fn carry_over_from(&self, old: &LogicalUnit) {
        let known = {
            let st = old.state();
            let mut copy = super::ua::UaTable::default();
            copy.carry_over(&st.ua, UnitAttention::AsymmetricAccessStateChanged);
            copy
        };
        self.state().ua.carry_over(&known, UnitAttention::AsymmetricAccessStateChanged);
    }

    /// Sets the state group `tpg` starts in, for a unit just opened (no
    /// transition: no unit attention beyond the power-on one).
    pub fn set_initial_alua_state(&self, tpg: u16, state: AluaState) {
        self.state().alua.set_initial_state(tpg, state);
    }

    /// Sets the PREF bit REPORT TARGET PORT GROUPS shows on group
    /// `preferred` only (none: on no group). No unit attention: the access
    /// states stay as they are.
    pub fn set_preferred_port_group(&self, preferred: Option<u16>) {
        self.state().alua.prefer_only(preferred);
    }

    /// The target port groups on other nodes that export the unit, as
    /// (group, relative port, state); if any state or group changed, every
    /// I_T nexus gets ASYMMETRIC ACCESS STATE CHANGED.
    pub fn set_peer_port_groups(&self, peers: &[(u16, u16, AluaState)]) -> bool {
        let mut st = self.state();
        let changed = st.alua.set_peer_groups(peers);
        if changed {
            st.ua.raise_all(UnitAttention::AsymmetricAccessStateChanged);
        }
        changed
    }

    /// Every target port exporting the unit, as (target port group,
    /// relative target port identifier), for REPORT TARGET PORT GROUPS.
    /// Groups that stay keep their state; a port that sends a command is
    /// listed even if it was never announced here.
    pub fn set_target_ports(&self, ports: &[(u16, u16)]) {
        self.state().alua.set_ports(ports);
    }

    /// Checks that run after decoding and before execution: the ALUA
    /// access state of the nexus's target port group (SPC-4 §5.16.2.4), then
    /// reservations, then write protection. A unit configured without
    /// reservations answers their commands as unsupported operation codes.
    fn pre_execute(&self, nexus: &Nexus, cdb: &Cdb) -> Result<Option<&Arc<dyn UnitForwarder>>, SenseReason> {
        if !self.spec.reservations && cdb.is_reservation_command() {
            return Err(SenseReason::InvalidOpcode);
        }
        if matches!(cdb, Cdb::SetTargetPortGroups { .. }) && !nexus.privileges().set_target_port_groups {
            // INQUIRY told this nexus that only implicit ALUA is supported.
            return Err(SenseReason::InvalidOpcode);
        }
        self.check_access(&nexus.id, cdb)
    }

    /// The access checks of [`Self::pre_execute`] for `cdb` sent by `id`:
    /// ALUA state, reservations, write protection, under one hold of the
    /// unit's lock. A command this node sends to the one that serves the
    /// volume passes the ALUA check here and the rest there: it comes back
    /// as where to send it.
    fn check_access(&self, id: &NexusId, cdb: &Cdb) -> Result<Option<&Arc<dyn UnitForwarder>>, SenseReason> {
        let mut st = self.state();
        let state = st.alua.state(id.target_port_group);
        if self.spec.remote {
            alua::check_remote(cdb, self.forwarder.get().is_some(), state)?;
        }
        alua::check(state, cdb)?;
        if alua::forwarded(cdb, state) {
            // Only the reservation commands, or a command through an
            // active/non-optimized port: whether this node serves the
            // volume is the backend's to say, asked outside the unit's lock.
            drop(st);
            if let Some(to) = self.forwarding() {
                return Ok(Some(to));
            }
            st = self.state();
        }
        st.pr.check(id, cdb)?;
        if cdb.writes_medium() && (self.spec.read_only || st.mode.swp) {
            return Err(SenseReason::WriteProtected);
        }
        Ok(None)
    }

    /// Whether `id` may read (`write` false) or write the medium now: the
    /// checks a READ or WRITE from that nexus would pass. A copy manager
    /// acting for the nexus (EXTENDED COPY) asks this of every unit it
    /// reads from or writes to.
    pub(crate) fn check_medium_access(&self, id: &NexusId, write: bool) -> Result<(), SenseReason> {
        let ext = cdb::Extent { lba: 0, blocks: 1, len_field: 0 };
        let probe = if write { Cdb::Write { ext, fua: false } } else { Cdb::Read { ext, fua: false } };
        self.check_access(id, &probe).map(|_| ())
    }

    async fn run(&self, luns: &LunMap, nexus: &Nexus, cmd: &ScsiCommand) -> Result<Reply, SenseReason> {
        let decoded = Cdb::decode(&cmd.cdb);
        match cdb::ua_policy(&cmd.cdb) {
            UaPolicy::Report => {
                if let Some(ua) = self.take_unit_attention(nexus) {
                    return Err(SenseReason::UnitAttention(ua));
                }
            }
            UaPolicy::ClearLunsChanged => nexus.lock().luns_changed = false,
            UaPolicy::Ignore | UaPolicy::AsSenseData => {}
        }
        let cdb = decoded?;
        if let Some(to) = self.pre_execute(nexus, &cdb)? {
            return self.forward(to, nexus, &cdb, cmd).await;
        }
        self.execute(luns, nexus, cdb, &cmd.data_out).await
    }

    async fn execute(&self, luns: &LunMap, nexus: &Nexus, cdb: Cdb, data_out: &Bytes) -> Result<Reply, SenseReason> {
        match cdb {
            Cdb::Read { .. }
            | Cdb::Write { .. }
            | Cdb::WriteAndVerify { .. }
            | Cdb::Verify { .. }
            | Cdb::SynchronizeCache { .. }
            | Cdb::PreFetch { .. }
            | Cdb::ReadCapacity10
            | Cdb::ReadCapacity16 { .. }
            | Cdb::WriteSame { .. }
            | Cdb::Unmap { .. }
            | Cdb::CompareAndWrite { .. }
            | Cdb::OrWrite { .. }
            | Cdb::WriteAtomic { .. }
            | Cdb::ReadDefectData { .. }
            | Cdb::GetLbaStatus { .. } => sbc::execute(self, cdb, data_out).await,
            _ => spc::execute(self, luns, nexus, cdb, data_out).await,
        }
    }
}

/// What running a command came to, before it is encoded for the wire.
pub(crate) async fn outcome(luns: &LunMap, nexus: &Nexus, cmd: &ScsiCommand) -> Result<Reply, SenseReason> {
    match luns.get(&cmd.lun) {
        Some(lu) => {
            if nexus.note_unit(lu) {
                // REPORT TARGET PORT GROUPS lists the port even if the engine never announced it.
                lu.state().alua.add_port(nexus.id.target_port_group, nexus.id.relative_target_port);
            }
            lu.run(luns, nexus, cmd).await
        }
        None => spc::without_unit(luns, nexus, cmd),
    }
}

pub(crate) async fn dispatch(luns: &LunMap, nexus: &Nexus, cmd: ScsiCommand) -> ScsiResponse {
    let lu = luns.get(&cmd.lun);
    if let Some(lu) = lu {
        lu.counters.commands.fetch_add(1, Ordering::Relaxed);
    }
    let opcode = cmd.cdb.first().copied().unwrap_or(0);
    let span = tracing::debug_span!("scsi", lun = cmd.lun, opcode);
    let started = std::time::Instant::now();
    let result = tracing::Instrument::instrument(outcome(luns, nexus, &cmd), span).await;
    if let Some(lu) = lu {
        lu.counters.latency.record(started.elapsed());
    }
    match result {
        Ok(Reply { status, data }) => ScsiResponse { status, data_in: data, sense: Bytes::new() },
        Err(SenseReason::ReservationConflict) => {
            ScsiResponse { status: ScsiStatus::ReservationConflict, data_in: Bytes::new(), sense: Bytes::new() }
        }
        Err(reason) => {
            let descriptor = lu.is_some_and(|lu| lu.mode().d_sense);
            if let Some(lu) = lu {
                if !matches!(reason, SenseReason::UnitAttention(_)) {
                    lu.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            tracing::debug!(lun = cmd.lun, opcode, %reason, "check condition");
            ScsiResponse { status: ScsiStatus::CheckCondition, data_in: Bytes::new(), sense: reason.encode(descriptor) }
        }
    }
}
