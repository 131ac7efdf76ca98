//! The instances a container run starts one by one — the handlers of its HTTP requests, the
//! instances of the embedder's calls ([`InstanceGroup`]) — each of which may be killed alone
//! (its client gave up, its timeout ran out) or with all the others (the container's kill):
//! their kill switches, how many are alive, and how each one's end came about.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use super::kill::KillSwitch;
use crate::signal::Watched;

/// Instances started one by one for a container run, killable alone or all at once.
pub(crate) struct InstanceGroup {
    members: Mutex<Members>,
    /// How many have been added and their end not counted yet. (`Watched` wakes waiters in
    /// order, which deterministic mode needs.)
    alive: Watched<usize>,
}

#[derive(Default)]
struct Members {
    next_id: u64,
    /// Kill switches of those not killed yet, in order: a kill of them all is the same every
    /// run, which deterministic mode needs.
    running: BTreeMap<u64, KillSwitch>,
    /// Those killed alone, until their end is counted.
    killed_alone: HashSet<u64>,
    /// The group was killed: one added now is killed at once (it may have been started just as
    /// the kill came).
    killed: bool,
}

/// How a member's end came about, as far as kills go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberEnd {
    /// It was killed alone ([`InstanceGroup::kill_one`]).
    pub killed_alone: bool,
    /// The group had been killed by the time it ended.
    pub group_killed: bool,
}

impl Default for InstanceGroup {
    fn default() -> Self {
        InstanceGroup {
            members: Mutex::default(),
            alive: Watched::new(0),
        }
    }
}

impl InstanceGroup {
    /// Adds a started instance; returns its id in the group. If the group was killed, the
    /// instance is killed at once.
    pub fn add(&self, switch: KillSwitch) -> u64 {
        let mut members = self.members.lock().unwrap();
        let id = members.next_id;
        members.next_id += 1;
        if members.killed {
            switch.kill();
        } else {
            members.running.insert(id, switch);
        }
        self.alive.send_if_modified(|alive| {
            *alive += 1;
            true
        });
        id
    }

    /// Kills member `id` alone, if it has not been killed already.
    pub fn kill_one(&self, id: u64) {
        let switch = {
            let mut members = self.members.lock().unwrap();
            let switch = members.running.remove(&id);
            if switch.is_some() {
                members.killed_alone.insert(id);
            }
            switch
        };
        if let Some(switch) = switch {
            switch.kill();
        }
    }

    /// Kills every member, and any added from now on.
    pub fn kill_all(&self) {
        let running = {
            let mut members = self.members.lock().unwrap();
            members.killed = true;
            std::mem::take(&mut members.running)
        };
        for switch in running.into_values() {
            switch.kill();
        }
    }

    /// Counts the end of member `id`, and says how it came about.
    pub fn ended(&self, id: u64) -> MemberEnd {
        let mut members = self.members.lock().unwrap();
        members.running.remove(&id);
        let end = MemberEnd {
            killed_alone: members.killed_alone.remove(&id),
            group_killed: members.killed,
        };
        self.alive.send_if_modified(|alive| {
            *alive = alive.saturating_sub(1);
            true
        });
        end
    }

    /// Resolves when every member added so far has had its end counted.
    pub async fn all_ended(&self) {
        let mut alive = self.alive.subscribe();
        let _ = alive.wait_for(|alive| *alive == 0).await;
    }
}
