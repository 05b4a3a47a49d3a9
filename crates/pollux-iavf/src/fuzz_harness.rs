//! Entry points shared by the cargo-fuzz targets (crates/pollux-iavf/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".

use crate::proto::{
    self, Answer, AqDesc, BringUp, PfEvent, PfMessage, QueuePairInfo, Request, Step, Transaction,
    VcError, VfResources, DRIVER_CAPS,
};
use crate::regs;

/// One PF message from fuzz input, or `None` for "the wait timed out".
struct Msg {
    opcode: u32,
    status: i32,
    payload: Vec<u8>,
}

/// Splits input into PF messages: a selector byte (0xFF: timeout), then
/// opcode (its byte modulo 32, 17 being EVENT), status (0, or minus the
/// byte), length (a byte; payload is what is left when short), payload.
fn messages(data: &[u8]) -> impl Iterator<Item = Option<Msg>> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&sel, tail) = rest.split_first()?;
        if sel == 0xFF {
            rest = tail;
            return Some(None);
        }
        let opcode = (sel % 32) as u32;
        let status = tail.first().map(|&b| -(b as i32 % 70)).unwrap_or(0);
        let len = tail.get(1).copied().unwrap_or(0) as usize;
        let body = tail.get(2..).unwrap_or(&[]);
        let n = len.min(body.len());
        rest = &body[n..];
        Some(Some(Msg {
            opcode,
            status,
            payload: body[..n].to_vec(),
        }))
    })
}

/// Arbitrary, truncated and out-of-order PF messages into the bring-up
/// machine: it never panics, never asks for more than
/// [`BringUp::MAX_REQUESTS`] requests, ends on the first error, and what it
/// reports when done is consistent with what it asked.
pub fn vc_bringup(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    // The capability word asked for: a subset of ours.
    let caps = DRIVER_CAPS & (first as u32).wrapping_mul(0x0101_0101);
    let mut b = BringUp::new(caps);
    let mut requests = 0;
    let mut last: Option<Request> = None;
    for m in messages(data).take(256) {
        let Some(req) = b.next_request() else { break };
        if last.as_ref() != Some(&req) {
            requests += 1;
            last = Some(req.clone());
        }
        assert!(requests <= BringUp::MAX_REQUESTS, "{requests} requests");
        assert!(req.validate().is_ok());
        match m {
            None => {
                let e = b.on_timeout("fuzz", 1);
                assert!(matches!(e, VcError::Timeout { .. }));
                assert_eq!(b.next_request(), None);
            }
            Some(m) => {
                let msg = PfMessage {
                    opcode: m.opcode,
                    status: m.status,
                    payload: &m.payload,
                };
                match b.on_message(&msg) {
                    Ok(Step::Event(ev)) => {
                        assert_eq!(m.opcode, proto::OP_EVENT);
                        assert!(!matches!(
                            ev,
                            PfEvent::ResetImpending | PfEvent::PfDriverClose
                        ));
                    }
                    Ok(Step::Reply(_)) => assert_eq!(m.status, 0),
                    Err(_) => assert_eq!(b.next_request(), None, "an error ends the conversation"),
                }
            }
        }
    }
    if let Some(o) = b.outcome() {
        assert_eq!(o.version.major, 1);
        assert!(o.version.minor <= 1);
        assert_eq!(
            o.res.caps & !caps & !DRIVER_CAPS,
            0,
            "only known caps granted"
        );
        if o.version.minor == 1 {
            assert_eq!(o.res.caps & !caps, 0, "only asked caps granted");
        }
        assert!((1..=regs::MAX_QUEUES).contains(&o.res.num_queue_pairs));
        if let Some(m) = o.res.mac {
            assert!(m[0] & 1 == 0 && m != [0; 6]);
        }
        if o.res.has(proto::CAP_RSS_PF) {
            assert!(o.res.rss_key_size > 0 && o.res.rss_lut_size > 0);
        }
    }
}

/// One arbitrary PF message to each kind of request, and as an admin
/// queue element: never panics, an accepted answer matches its request,
/// and a finished transaction takes nothing more.
pub fn vc_reply(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Some(Some(m)) = messages(rest).next() else {
        return;
    };
    let reqs = [
        Request::Version,
        Request::GetVfResources {
            caps: Some(DRIVER_CAPS),
        },
        Request::GetVfResources { caps: None },
        Request::ConfigVsiQueues {
            vsi: 3,
            pairs: vec![QueuePairInfo::default()],
        },
        Request::EnableQueues {
            vsi: 3,
            rx: 1,
            tx: 1,
        },
        Request::GetStats { vsi: 3 },
        Request::GetRssHenaCaps,
        Request::RequestQueues(8),
        Request::ConfigPromisc { vsi: 3, flags: 3 },
        Request::AddVlan {
            vsi: 3,
            vids: vec![5],
        },
    ];
    let req = reqs[sel as usize % reqs.len()].clone();
    let granted = if sel & 0x80 != 0 {
        DRIVER_CAPS
    } else {
        proto::CAP_L2
    };
    let msg = PfMessage {
        opcode: m.opcode,
        status: m.status,
        payload: &m.payload,
    };
    if let Ok(mut t) = Transaction::new(req.clone(), granted) {
        match t.on_message(&msg) {
            Ok(Step::Reply(a)) => {
                match (&req, &a) {
                    (Request::Version, Answer::Version(v)) => assert!(v.major == 1 && v.minor <= 1),
                    (Request::GetVfResources { .. }, Answer::Resources(r)) => {
                        assert!((1..=regs::MAX_QUEUES).contains(&r.num_queue_pairs))
                    }
                    (Request::GetStats { .. }, Answer::Stats(_)) => {}
                    (Request::GetRssHenaCaps, Answer::Hena(_)) => {}
                    (Request::RequestQueues(_), Answer::QueuesOffered(_))
                    | (Request::RequestQueues(_), Answer::QueuesGranted) => {}
                    (_, Answer::Ack) => {}
                    (r, a) => panic!("{r:?} answered with {a:?}"),
                }
                assert_eq!(t.on_message(&msg), Err(VcError::Finished));
            }
            Ok(Step::Event(_)) => assert_eq!(m.opcode, proto::OP_EVENT),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let _ = VfResources::parse(&m.payload, DRIVER_CAPS);
    let _ = PfEvent::parse(&m.payload, sel & 1 != 0);
    // The same bytes as an admin queue element's descriptor.
    let mut q = [0u64; 4];
    for (i, c) in m.payload.chunks(8).take(4).enumerate() {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        q[i] = u64::from_le_bytes(b);
    }
    let d = AqDesc::from_qwords(q);
    assert_eq!(AqDesc::from_qwords(d.to_qwords()), d);
    if let Ok(pm) = PfMessage::from_arq(&d, &m.payload) {
        assert!(pm.payload.len() <= m.payload.len());
        assert_eq!(d.opcode, regs::AQC_OPC_SEND_MSG_TO_VF);
    }
}
