//! Checkpoint ids for Rust callers: uuid version 6 strings (the format LangGraph uses), so
//! string order is creation order.

use std::hash::{BuildHasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use uuid::Uuid;

/// 100 ns ticks between the Gregorian epoch (1582-10-15) and the Unix epoch.
const GREGORIAN_TO_UNIX_TICKS: u64 = 0x01B2_1DD2_1381_4000;

/// Makes uuid6 checkpoint ids that strictly increase, even when the clock stands still or steps
/// back, and that stay above a floor (the largest id already in a store, so ids keep increasing
/// after a reopen).
pub struct CheckpointIdGenerator {
    last_ticks: Mutex<u64>,
    /// Clock sequence and node: random per generator, the low 62 bits of every id.
    tail: u64,
}

impl CheckpointIdGenerator {
    /// A generator whose ids all sort after `floor` when `floor` is a uuid6 (other ids are
    /// ignored: their order against uuids is the caller's business).
    pub fn new(floor: Option<&str>) -> Self {
        let floor_ticks = floor.and_then(v6_ticks).unwrap_or(0);
        let tail = RandomState::new().hash_one(std::process::id()) & ((1 << 62) - 1);
        CheckpointIdGenerator { last_ticks: Mutex::new(floor_ticks), tail }
    }

    /// The next id, e.g. `1f0c1d2e-3a4b-6c5d-8e7f-0123456789ab`.
    pub fn next_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos() / 100).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let now_ticks = now.saturating_add(GREGORIAN_TO_UNIX_TICKS) & ((1 << 60) - 1);
        let ticks = {
            let mut last = self.last_ticks.lock();
            *last = now_ticks.max(*last + 1);
            *last
        };
        let high = ((ticks >> 12) << 16) | (0x6 << 12) | (ticks & 0xfff);
        let low = (0b10 << 62) | self.tail;
        Uuid::from_u64_pair(high, low).hyphenated().to_string()
    }
}

/// When a time-ordered uuid (version 1, 6 or 7) was made; `None` for any other id.
pub(crate) fn uuid_time(uuid: &Uuid) -> Option<std::time::SystemTime> {
    let (seconds, nanos) = uuid.get_timestamp()?.to_unix();
    UNIX_EPOCH.checked_add(std::time::Duration::new(seconds, nanos))
}

/// The 60-bit timestamp of a uuid6 string, or `None` if `id` is not one.
fn v6_ticks(id: &str) -> Option<u64> {
    let uuid = Uuid::try_parse(id).ok()?;
    if uuid.get_version_num() != 6 {
        return None;
    }
    let (high, _) = uuid.as_u64_pair();
    Some(((high >> 16) << 12) | (high & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_strictly_increase_and_are_uuid6() {
        let generator = CheckpointIdGenerator::new(None);
        let ids: Vec<String> = (0..10_000).map(|_| generator.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let parsed = Uuid::try_parse(&ids[0]).expect("valid uuid");
        assert_eq!(parsed.get_version_num(), 6);
    }

    #[test]
    fn ids_stay_above_a_floor_from_the_future() {
        let future = CheckpointIdGenerator::new(None);
        // Push the first generator's clock far ahead, then seed a second one from its id.
        *future.last_ticks.lock() += 10_000_000_000;
        let floor = future.next_id();
        let generator = CheckpointIdGenerator::new(Some(&floor));
        assert!(generator.next_id() > floor);
        assert_eq!(v6_ticks(&floor).map(|t| t > 0), Some(true));
        assert_eq!(v6_ticks("not-a-uuid"), None);
    }
}
