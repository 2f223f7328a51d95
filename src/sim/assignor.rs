//! Partition assignors (`partition.assignment.strategy`), as librdkafka implements them.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::TopicPartition;

/// An assignment strategy: the eager `range` and `roundrobin`, or `cooperative-sticky`, whose
/// rebalances are incremental (KIP-429).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AssignmentStrategy {
    Range,
    RoundRobin,
    CooperativeSticky,
}

impl AssignmentStrategy {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "range" => Some(AssignmentStrategy::Range),
            "roundrobin" => Some(AssignmentStrategy::RoundRobin),
            "cooperative-sticky" => Some(AssignmentStrategy::CooperativeSticky),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether rebalances under it are incremental: members keep what they own through a
    /// rebalance and revoke only the partitions that move.
    pub(crate) fn is_cooperative(self) -> bool {
        self == AssignmentStrategy::CooperativeSticky
    }
}

/// The group's protocol, as the Kafka coordinator picks it: among the strategies every member
/// supports, each member votes for the one it prefers most; most votes wins, ties go to the
/// first member's preference order.
pub(crate) fn select_protocol(preferences: &[&[AssignmentStrategy]]) -> Option<AssignmentStrategy> {
    let (first, rest) = preferences.split_first()?;
    let candidates: Vec<AssignmentStrategy> = first
        .iter()
        .copied()
        .filter(|s| rest.iter().all(|p| p.contains(s)))
        .collect();
    let mut votes: BTreeMap<AssignmentStrategy, usize> = BTreeMap::new();
    for prefs in preferences {
        if let Some(choice) = prefs.iter().find(|s| candidates.contains(s)) {
            *votes.entry(*choice).or_default() += 1;
        }
    }
    let best = votes.values().copied().max()?;
    candidates.into_iter().find(|c| votes.get(c) == Some(&best))
}

/// Assigns the partitions of every subscribed topic to the members (member id → subscribed
/// topics, in member id order). Topics `partitions_of` does not know are skipped. `owned` is
/// what each member owns going into the rebalance, which only the sticky strategy uses.
pub(crate) fn assign(
    strategy: AssignmentStrategy,
    members: &BTreeMap<String, Vec<String>>,
    owned: &BTreeMap<String, Vec<TopicPartition>>,
    partitions_of: impl Fn(&str) -> Option<i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut result: BTreeMap<String, Vec<TopicPartition>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    match strategy {
        AssignmentStrategy::CooperativeSticky => {
            return sticky(members, owned, &topics, partitions_of);
        }
        AssignmentStrategy::Range => {
            // Per topic: members subscribed to it, sorted by member id; partitions split into
            // contiguous ranges, the first (partitions % members) members get one extra.
            for topic in topics {
                let Some(n) = partitions_of(topic) else {
                    continue;
                };
                let consumers: Vec<&String> = members
                    .iter()
                    .filter(|(_, subs)| subs.contains(topic))
                    .map(|(m, _)| m)
                    .collect();
                let c = consumers.len() as i32;
                let (per, extra) = (n / c, n % c);
                for (i, member) in consumers.into_iter().enumerate() {
                    let i = i as i32;
                    let start = per * i + i.min(extra);
                    let len = per + i32::from(i < extra);
                    let assigned = result.get_mut(member).expect("member listed");
                    assigned.extend(
                        (start..start + len).map(|p| TopicPartition::new(topic.clone(), p)),
                    );
                }
            }
        }
        AssignmentStrategy::RoundRobin => {
            // All partitions of all topics in (topic, partition) order, dealt to members in
            // member id order, skipping members not subscribed to the partition's topic.
            let ids: Vec<&String> = members.keys().collect();
            let mut next = 0usize;
            for topic in topics {
                let Some(n) = partitions_of(topic) else {
                    continue;
                };
                for p in 0..n {
                    for step in 0..ids.len() {
                        let candidate = ids[(next + step) % ids.len()];
                        if members[candidate].contains(topic) {
                            result
                                .get_mut(candidate)
                                .expect("member listed")
                                .push(TopicPartition::new(topic.clone(), p));
                            next = (next + step + 1) % ids.len();
                            break;
                        }
                    }
                }
            }
        }
    }
    result
}

/// The sticky target assignment: as balanced as the subscriptions allow (member counts differ
/// by at most one), moving as few partitions as possible from their owners. Each member keeps
/// what it owns up to its share (its highest partitions); the rest, and every unowned partition,
/// goes in (topic, partition) order to the eligible member with the fewest, the first by member
/// id on a tie. (librdkafka's sticky assignor balances the same way; which of an owner's
/// partitions move may differ.)
fn sticky(
    members: &BTreeMap<String, Vec<String>>,
    owned: &BTreeMap<String, Vec<TopicPartition>>,
    topics: &BTreeSet<&String>,
    partitions_of: impl Fn(&str) -> Option<i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let all: Vec<TopicPartition> = topics
        .iter()
        .filter_map(|t| Some((t, partitions_of(t)?)))
        .flat_map(|(t, n)| (0..n).map(move |p| TopicPartition::new(t.as_str(), p)))
        .collect();
    let (floor, extra) = match members.len() {
        0 => (0, 0),
        n => (all.len() / n, all.len() % n),
    };
    let mut result: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    let mut claimed: BTreeSet<TopicPartition> = BTreeSet::new();
    let mut with_extra = 0;
    for (id, subscription) in members {
        let mut keep: Vec<TopicPartition> = owned
            .get(id)
            .into_iter()
            .flatten()
            .filter(|tp| subscription.iter().any(|t| *t == tp.topic) && all.contains(tp))
            .filter(|tp| !claimed.contains(*tp))
            .cloned()
            .collect();
        keep.sort();
        let share = if keep.len() > floor && with_extra < extra {
            with_extra += 1;
            floor + 1
        } else {
            floor
        };
        // The owner keeps its highest partitions, as librdkafka did on the mock cluster.
        keep.drain(..keep.len().saturating_sub(share));
        claimed.extend(keep.iter().cloned());
        result.insert(id.clone(), keep);
    }
    for tp in all.iter().filter(|tp| !claimed.contains(*tp)) {
        let least = members
            .iter()
            .filter(|(_, subscription)| subscription.iter().any(|t| *t == tp.topic))
            .map(|(id, _)| id)
            .min_by_key(|id| result[*id].len());
        if let Some(id) = least {
            result.get_mut(id).expect("member listed").push(tp.clone());
        }
    }
    for partitions in result.values_mut() {
        partitions.sort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use AssignmentStrategy::*;

    #[test]
    fn protocol_selection_follows_votes_among_common_strategies() {
        assert_eq!(
            select_protocol(&[&[Range, RoundRobin], &[RoundRobin, Range]]),
            Some(Range)
        );
        assert_eq!(
            select_protocol(&[&[Range, RoundRobin], &[RoundRobin], &[RoundRobin, Range]]),
            Some(RoundRobin)
        );
        assert_eq!(select_protocol(&[&[Range], &[RoundRobin]]), None);
        assert_eq!(select_protocol(&[]), None);
    }

    fn tps(ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new("t", *p)).collect()
    }

    #[test]
    fn the_sticky_target_moves_only_what_balance_needs() {
        let subs: BTreeMap<String, Vec<String>> = ["a", "b"]
            .iter()
            .map(|m| (m.to_string(), vec!["t".to_string()]))
            .collect();
        let owned = BTreeMap::from([("a".to_string(), tps(&[0, 1, 2, 3]))]);
        let target = assign(CooperativeSticky, &subs, &owned, |_| Some(4));
        assert_eq!(target["a"], tps(&[2, 3]));
        assert_eq!(target["b"], tps(&[0, 1]));
        // b leaves: a keeps its own and takes b's.
        let one = BTreeMap::from([("a".to_string(), vec!["t".to_string()])]);
        let target = assign(CooperativeSticky, &one, &target, |_| Some(4));
        assert_eq!(target["a"], tps(&[0, 1, 2, 3]));
        // Five partitions, two members owning 3 and 2: nothing moves.
        let owned = BTreeMap::from([
            ("a".to_string(), tps(&[0, 2, 4])),
            ("b".to_string(), tps(&[1, 3])),
        ]);
        let target = assign(CooperativeSticky, &subs, &owned, |_| Some(5));
        assert_eq!(
            (target["a"].clone(), target["b"].clone()),
            (tps(&[0, 2, 4]), tps(&[1, 3]))
        );
    }
}
