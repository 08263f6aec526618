//! Response ids and timestamps.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A process-unique id with a prefix (`chatcmpl-`, `msg_`): a start-time seed plus a counter,
/// so ids differ across restarts without a random-number generator per request.
pub(crate) fn new_id(prefix: &str) -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or_default())
            .unwrap_or_default()
    });
    let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    // By hand rather than `format!`: two ids are made per request (the request's and the
    // answer's), and the formatting machinery cost more than the rest of this function.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(prefix.len() + 18);
    id.push_str(prefix);
    id.push_str("cl");
    for shift in (0..16).rev() {
        id.push(char::from(HEX[usize::try_from((n >> (shift * 4)) & 0xf).unwrap_or_default()]));
    }
    id
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = super::new_id("msg_");
        let b = super::new_id("msg_");
        assert!(a.starts_with("msg_cl") && a != b);
        assert_eq!(a.len(), "msg_cl".len() + 16);
        assert!(a["msg_cl".len()..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
