//! Static group membership (`group.instance.id`, KIP-345) on the consumer's side: a member
//! whose instance id a newer member took is fenced (`FENCED_INSTANCE_ID`), which librdkafka
//! raises as a fatal error. The coordinator's side (a restart within the session replaces the
//! old member and keeps its assignment) is in [`group`](super::group); a static member's
//! close sends no LeaveGroup ([`leave_group`](World::leave_group)).

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::*;

impl World {
    /// Whether the client is a static member whose member id a newer member with its
    /// `group.instance.id` replaced.
    pub(crate) fn static_member_fenced(&self, client: ClientId) -> bool {
        let Some(c) = self.consumers.get(&client) else {
            return false;
        };
        let (Some(member), Some(instance)) = (&c.member, &c.settings.group_instance_id) else {
            return false;
        };
        self.groups
            .get(&c.settings.group_id)
            .is_some_and(|g| g.fenced(member, instance))
    }

    /// Raises librdkafka's fatal error on a fenced static member: the application's next poll
    /// gets `_FATAL`, then the assignment is revoked as lost; no commit or join follows
    /// (librdkafka's `rd_kafka_set_fatal_error` on `FENCED_INSTANCE_ID`).
    pub(crate) fn fence(&mut self, client: ClientId) {
        let Some(c) = self.consumers.get_mut(&client) else {
            return;
        };
        if c.fatal {
            return;
        }
        c.fatal = true;
        c.errors
            .push_front(KafkaError::MessageConsumption(RDKafkaErrorCode::Fatal));
        let (incarnation, group) = (c.incarnation, c.settings.group_id.clone());
        let instance_id = c.settings.group_instance_id.clone().unwrap_or_default();
        self.record(
            Some(incarnation),
            HistoryEvent::StaticMemberFenced { group, instance_id },
        );
        self.touch();
    }
}
