//! Partition assignors (`partition.assignment.strategy`), as librdkafka implements them.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::TopicPartition;

/// An eager assignment strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AssignmentStrategy {
    Range,
    RoundRobin,
}

impl AssignmentStrategy {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "range" => Some(AssignmentStrategy::Range),
            "roundrobin" => Some(AssignmentStrategy::RoundRobin),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
        }
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
/// topics, in member id order). Topics `partitions_of` does not know are skipped.
pub(crate) fn assign(
    strategy: AssignmentStrategy,
    members: &BTreeMap<String, Vec<String>>,
    partitions_of: impl Fn(&str) -> Option<i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut result: BTreeMap<String, Vec<TopicPartition>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    match strategy {
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
}
