//! Entry points shared by the cargo-fuzz targets (crates/pollux-ixgbevf/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".

use crate::proto::{
    check_reply, Answer, Api, BringUp, BringUpConfig, Handshake, MbxError, Request, Step,
    Transaction, XcastMode,
};
use crate::regs::MBX_WORDS;

/// Splits fuzz input into PF messages: a length byte (0..=16 words, taken
/// modulo 17) then that many little-endian words (short input: what is
/// left). A length byte of 0xFF stands for "the wait timed out".
fn messages(data: &[u8]) -> impl Iterator<Item = Option<Vec<u32>>> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&n, tail) = rest.split_first()?;
        if n == 0xFF {
            rest = tail;
            return Some(None);
        }
        let n = (n as usize % (MBX_WORDS + 1)).min(tail.len().div_ceil(4));
        let bytes = &tail[..(4 * n).min(tail.len())];
        let words = bytes
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(b)
            })
            .collect();
        rest = &tail[bytes.len()..];
        Some(Some(words))
    })
}

/// Arbitrary, truncated and out-of-order PF replies into the bring-up
/// machine: it never panics, never asks for more than
/// [`BringUp::MAX_REQUESTS`] requests, ends on the first error, and what it
/// reports when done is consistent.
pub fn mbx_bringup(data: &[u8]) {
    let (&first, data) = match data.split_first() {
        Some(x) => x,
        None => return,
    };
    let max_api = Api::NEGOTIATION_ORDER[first as usize % 6];
    let cfg = BringUpConfig {
        fallback_mac: [2, 0x50, 0, 0, 5, 0],
        prefer_mac: first & 0x80 != 0,
        max_api,
    };
    let mut b = BringUp::new(cfg.clone());
    let mut requests = 0;
    let mut last: Option<Request> = None;
    for msg in messages(data).take(256) {
        let Some(req) = b.next_request() else { break };
        if last.as_ref() != Some(&req) {
            requests += 1;
            last = Some(req.clone());
        }
        assert!(requests <= BringUp::MAX_REQUESTS, "{requests} requests");
        assert!(req.encode().words().len() <= MBX_WORDS);
        assert!(req.reply_len() <= MBX_WORDS);
        if let Request::Negotiate(v) = req {
            assert!(v <= max_api);
        }
        match msg {
            None => {
                let e = b.on_timeout("fuzz", 1);
                assert!(matches!(e, MbxError::Timeout { .. }));
                assert_eq!(b.next_request(), None);
            }
            Some(words) => match b.on_reply(&words) {
                Ok(Step::Advanced) | Ok(Step::Unsolicited(_)) => {}
                Err(_) => assert_eq!(b.next_request(), None, "an error ends the conversation"),
            },
        }
    }
    if let Some(o) = b.outcome() {
        assert!(o.api <= max_api);
        assert_eq!(b.handshake() == Handshake::V15, o.api == Api::V15);
        assert!((1..=8).contains(&o.queues.tx) && (1..=8).contains(&o.queues.rx));
        assert!(o.queues.tcs <= o.queues.rx && o.queues.default_queue < o.queues.tx);
        assert!(o.mac[0] & 1 == 0 && o.mac != [0; 6], "a unicast MAC");
        assert!(o.mc_filter_type <= 3);
        if let Some(p) = o.perm_mac {
            assert!(o.mac == p || o.mac == cfg.fallback_mac);
        } else {
            assert_eq!(o.mac, cfg.fallback_mac);
        }
    }
}

/// One arbitrary reply to each kind of request under each API version:
/// never panics, and an accepted answer matches the request.
pub fn mbx_reply(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let words: Vec<u32> = messages(rest).flatten().next().unwrap_or_default();
    let reqs = [
        Request::Reset,
        Request::SetMac([2, 1, 2, 3, 4, 5]),
        Request::SetMulticast(vec![1, 2, 3]),
        Request::SetVlan { vid: 5, add: true },
        Request::SetLpe { max_frame: 1518 },
        Request::SetMacvlan {
            index: 1,
            mac: Some([2, 0, 0, 0, 0, 9]),
        },
        Request::Negotiate(Api::V13),
        Request::GetQueues,
        Request::GetReta,
        Request::GetRssKey,
        Request::UpdateXcast(XcastMode::AllMulti),
        Request::UpdateXcast(XcastMode::Promisc),
    ];
    let req = reqs[sel as usize % reqs.len()].clone();
    let api = Api::NEGOTIATION_ORDER[(sel as usize / reqs.len()) % 6];
    if let Ok(a) = check_reply(&req, &words) {
        match (&req, a) {
            (
                Request::Reset,
                Answer::Reset {
                    mac,
                    mc_filter_type,
                },
            ) => {
                assert!(mc_filter_type <= 3);
                assert!(mac.map_or(true, |m| m[0] & 1 == 0));
            }
            (Request::GetQueues, Answer::Queues(q)) => {
                assert!((1..=8).contains(&q.tx) && (1..=8).contains(&q.rx));
                assert!(!q.tx_queue_regs().is_empty() && q.tx_queue_regs().iter().all(|r| *r < 8));
                assert!((1..=8).contains(&q.rx_queues()) || q.tcs > 1);
            }
            (Request::GetReta, Answer::Reta(r)) => {
                assert!(r.len() == 128 && r.iter().all(|e| *e < 4))
            }
            (Request::GetRssKey, Answer::RssKey(_)) => {}
            (Request::UpdateXcast(_), Answer::Xcast(_)) => {}
            (_, Answer::Ack) => {}
            (r, a) => panic!("{r:?} answered with {a:?}"),
        }
    }
    if let Ok(mut t) = Transaction::new(req, api) {
        let first = t.on_reply(&words);
        if let Ok(Some(_)) = first {
            assert_eq!(t.on_reply(&words), Err(MbxError::Finished));
        }
    }
}
