//! The measured scenarios: a fixed-request throughput phase, and at each registration
//! checkpoint the lookups, the full Block2 retrieval, the updates and the retrieval during
//! updates; between phases the RD is left to go idle.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::rc::Rc;
use std::time::{Duration, Instant};

use coap_lite::CoapOption;
use serde_json::{json, Value};

use crate::load::{code_str, run_phase};
use crate::probe::{full_block2, get_once, href, split_links};
use crate::process::{mem_json, sample_proc, start_perf, stop_perf};
use crate::report::{clock, log_phase, round2, stats_json};
use crate::workload::{block2_value, get_request, Directory, Fixed, Updates, CODE_CONTENT};
use crate::Args;

pub struct Run {
    pub args: Args,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub dir: Rc<RefCell<Directory>>,
}

impl Run {
    pub fn throughput(
        &self,
        label: &str,
        bytes: Vec<u8>,
        want: u8,
        inflight: usize,
        sockets: usize,
    ) -> Value {
        let before = sample_proc(self.pid);
        let (_, mut st, el) = run_phase(
            self.addr,
            Fixed { bytes, want },
            u64::MAX,
            inflight,
            sockets,
            self.args.seconds,
            false,
        );
        let after = sample_proc(self.pid);
        let mut v = stats_json(&mut st, el, before.as_ref(), after.as_ref());
        v["settle_s"] = json!(self.settle());
        log_phase(label, &v);
        v
    }

    /// Wait (≤ 60 s) until the RD is idle, so a backlog (answers it still computes for requests
    /// this phase gave up on) does not run into the next phase. Returns the seconds waited.
    pub fn settle(&self) -> f64 {
        let start = Instant::now();
        let Some(mut prev) = sample_proc(self.pid) else {
            return 0.0;
        };
        while start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
            let Some(now) = sample_proc(self.pid) else {
                break;
            };
            // Under 10% of a core over the last 100 ms: idle.
            if now.cpu_s - prev.cpu_s < 0.011 {
                break;
            }
            prev = now;
        }
        round2(start.elapsed().as_secs_f64())
    }

    /// `perf record` of the gateway into `<--perf-record>.<phase>`, at the last checkpoint only.
    pub fn perf(&self, last: bool, phase: &str) -> Option<Child> {
        let base = self.args.perf_record.as_ref().filter(|_| last)?;
        let mut file = base.clone().into_os_string();
        file.push(format!(".{phase}"));
        start_perf(self.pid, Path::new(&file))
    }

    pub fn checkpoint(&self, cp: u64, last: bool) -> Value {
        let k = self.args.inflight;
        let socks = self.args.sockets;
        let registered = self.dir.borrow().registered();
        let mut out =
            json!({"registered": registered, "mem": mem_json(sample_proc(self.pid).as_ref())});
        let ep_target = "/rd-lookup/ep?ep=dev-123";
        let check = get_once(self.addr, ep_target);
        out["lookup_ep_check"] = json!(check.as_ref().map(|(c, p)| json!({"code": code_str(*c), "has_dev_123": p.contains("dev-123"), "links": split_links(p).len()})));
        let rare_expected = {
            let d = self.dir.borrow();
            d.rare
                .iter()
                .zip(&d.locations)
                .filter(|(r, l)| **r && l.is_some())
                .count()
        };
        let rare = get_once(self.addr, "/rd-lookup/res?rt=rare");
        out["lookup_rare_check"] = json!({
            "expected_links": rare_expected,
            "code": rare.as_ref().map(|(c, _)| code_str(*c)),
            "links": rare.as_ref().map(|(_, p)| split_links(p).iter().filter(|l| href(l).is_some_and(|h| h.ends_with("/x"))).count()),
        });
        let perf = self.perf(last, "lookup_ep");
        out["lookup_ep"] = self.throughput(
            &format!("@{cp} GET {ep_target}"),
            get_request(ep_target, &[]),
            CODE_CONTENT,
            k,
            socks,
        );
        stop_perf(perf);
        let perf = self.perf(last, "lookup_rare");
        out["lookup_res_rare"] = self.throughput(
            &format!("@{cp} GET /rd-lookup/res?rt=rare"),
            get_request("/rd-lookup/res?rt=rare", &[]),
            CODE_CONTENT,
            k,
            socks,
        );
        stop_perf(perf);
        let first_block = get_request(
            "/rd-lookup/res?rt=temperature",
            &[(CoapOption::Block2, block2_value(0, 6))],
        );
        let perf = self.perf(last, "block0");
        out["lookup_res_temperature_block0"] = self.throughput(
            &format!("@{cp} GET ?rt=temperature block 0"),
            first_block,
            CODE_CONTENT,
            k,
            socks,
        );
        stop_perf(perf);
        let limit = Duration::from_secs_f64((self.args.seconds * 6.0).max(60.0));
        let want = self.dir.borrow().base_histogram();
        let fb = full_block2(
            self.addr,
            "/rd-lookup/res?rt=temperature",
            Some(&want),
            registered,
            limit,
        );
        log_phase(&format!("@{cp} full Block2 ?rt=temperature"), &fb);
        out["lookup_res_temperature_full"] = fb;
        let endpoints: Vec<usize> = self
            .dir
            .borrow()
            .locations
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(i, _)| i)
            .collect();
        if endpoints.is_empty() {
            return out;
        }
        let perf = self.perf(last, "update");
        let before = sample_proc(self.pid);
        let updates = Updates {
            endpoints: endpoints.clone(),
            dir: self.dir.clone(),
        };
        let (_, mut st, el) = run_phase(
            self.addr,
            updates,
            u64::MAX,
            k,
            socks,
            self.args.seconds,
            false,
        );
        let after = sample_proc(self.pid);
        stop_perf(perf);
        let mut upd = stats_json(&mut st, el, before.as_ref(), after.as_ref());
        upd["settle_s"] = json!(self.settle());
        log_phase(&format!("@{cp} update POST <location>"), &upd);
        out["updates"] = upd;
        // Consistency while the directory changes: a second client fetches the whole result
        // block by block during more updates (which move bases, so the representation changes
        // under it); its blocks must still come from one snapshot.
        let addr = self.addr;
        let concurrent = std::thread::spawn(move || {
            full_block2(
                addr,
                "/rd-lookup/res?rt=temperature",
                None,
                registered,
                limit,
            )
        });
        let updates = Updates {
            endpoints,
            dir: self.dir.clone(),
        };
        let (_, mut st, el) = run_phase(
            self.addr,
            updates,
            u64::MAX,
            k,
            socks,
            self.args.seconds,
            false,
        );
        let during = concurrent
            .join()
            .unwrap_or_else(|_| json!({"error": "retrieval thread panicked"}));
        log_phase(&format!("@{cp} full Block2 during updates"), &during);
        out["lookup_res_temperature_full_during_updates"] = during;
        out["updates_during_full_block2"] = stats_json(&mut st, el, None, None);
        self.settle();
        out["mem_after"] = mem_json(sample_proc(self.pid).as_ref());
        eprintln!("{} @{cp} memory {}", clock(), out["mem_after"]);
        out
    }
}
