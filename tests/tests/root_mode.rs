//! Root mode without escalation: what a process running as the scan user can plant for the
//! next root-started `crawler run` — links where root creates, hands over or writes — does
//! nothing outside the output directory; and no input file (plan, opt-out and exclude lists,
//! the planning datasets) is ever opened while the opener has uid 0 or any capability, as a
//! fanotify permission watch sees it at the moment of each open.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

/// An empty network namespace (only a loopback, down): nothing sent in it leaves it. Deleted
/// when dropped, also when the test fails.
struct EmptyNs(String);

impl EmptyNs {
    fn new(tag: &str) -> EmptyNs {
        let name = format!("p25h2-{tag}-{}", std::process::id());
        sh(&format!("ip netns add {name}"));
        EmptyNs(name)
    }
}

impl Drop for EmptyNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_as_root(ns: &str, cfg: &Path) -> Output {
    Command::new("ip").args(["netns", "exec", ns]).arg(crawler()).args(["--quiet", "run", "--config"]).arg(cfg).output().unwrap()
}

/// `cmd` as the scan user (for planting what it could plant).
fn as_nobody(cmd: &str) {
    sh(&format!("setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sh -c '{cmd}'"));
}

fn utc_date() -> String {
    sh("date -u +%F").trim().to_string()
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn links_the_scan_user_plants_make_a_root_run_neither_chown_nor_write_outside() {
    if !require_root("root_links") || !require_tool("root_links", "setpriv") {
        return;
    }
    let ns = EmptyNs::new("links");
    let d = tempfile::Builder::new().prefix("p25-rootmode-").tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let routes = d.path().join("routes.pfx2as");
    std::fs::copy(root().join("datasets/fixtures/routeviews-rv2-20261101-1200.pfx2as"), &routes).unwrap();
    // What root owns and the scan user must never get or change.
    let victim_dir = d.path().join("victim");
    std::fs::create_dir(&victim_dir).unwrap();
    let victim_file = d.path().join("victim-file");
    std::fs::write(&victim_file, "precious").unwrap();
    std::fs::set_permissions(&victim_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The output directory as a first root run leaves it: the scan user's.
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let cfg = d.path().join("crawl.toml");
    std::fs::write(&cfg, format!("[crawl]\nvantage = \"v\"\nout = {:?}\ncrawl_id = \"x\"\n[inputs]\nroutes = [{:?}]\n[plan]\nselect = \"all\"\nper_asn = 5\nseed = 7\n", out.display().to_string(), routes.display().to_string())).unwrap();
    let untouched = |when: &str| {
        let m = std::fs::metadata(&victim_dir).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "{when}: the linked-to directory was handed to the scan user");
        let inside: Vec<_> = std::fs::read_dir(&victim_dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(inside.is_empty(), "{when}: root wrote into the linked-to directory: {inside:?}");
        assert_eq!(std::fs::read_to_string(&victim_file).unwrap(), "precious", "{when}: root wrote through a planted link");
        assert_eq!(std::fs::metadata(&victim_file).unwrap().uid(), 0, "{when}");
    };

    // 1. `_plans`, a directory root creates and hands over, replaced by a link to a root
    //    directory; the run-state file's temporary name, a link to a root file.
    as_nobody(&format!("ln -s {} {}/_plans && ln -s {} {}/.port25-run-v-s0of1.json.inprogress", victim_dir.display(), out.display(), victim_file.display(), out.display()));
    let o = run_as_root(&ns.0, &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("_plans a link: exit {:?}: {}", o.status.code(), err.trim());
    untouched("_plans a link");
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&out.join("_plans").display().to_string()) && err.contains("symbolic link"), "{err}");

    // 2. Without the `_plans` link the plan is built and the run goes on to the scan (which
    //    finds no route in the empty namespace): the state-file link stays harmless.
    std::fs::remove_file(out.join("_plans")).unwrap();
    let o = run_as_root(&ns.0, &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("state-file temporary a link: exit {:?}: {}", o.status.code(), err.trim());
    untouched("the state file's temporary name a link");
    assert_ne!(o.status.code(), Some(0), "no route in an empty namespace: {err}");
    let state = out.join(".port25-run-v-s0of1.json");
    assert!(std::fs::read_to_string(&state).unwrap().contains("\"running\""), "the run state is written");
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), NOBODY, "the run state is written by the scan user, not root");
    assert_eq!(std::fs::metadata(out.join("_plans")).unwrap().uid(), NOBODY);

    // 3. The partition's date directory, which root creates, a link to a root directory.
    let date_dir = out.join(format!("crawl_date={}", utc_date()));
    let _ = std::fs::remove_dir_all(&date_dir);
    as_nobody(&format!("ln -s {} {}", victim_dir.display(), date_dir.display()));
    let o = run_as_root(&ns.0, &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("crawl_date= a link: exit {:?}: {}", o.status.code(), err.trim());
    untouched("crawl_date= a link");
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&date_dir.display().to_string()) && err.contains("symbolic link"), "{err}");

    // 4. The output directory itself a link (its parent is the scan user's here).
    std::os::unix::fs::chown(d.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let moved = d.path().join("out-moved");
    as_nobody(&format!("mv {0} {1} && ln -s {2} {0}", out.display(), moved.display(), victim_dir.display()));
    let o = run_as_root(&ns.0, &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("out a link: exit {:?}: {}", o.status.code(), err.trim());
    untouched("out a link");
    assert_eq!(o.status.code(), Some(2), "{err}");
    std::os::unix::fs::chown(d.path(), Some(0), Some(0)).unwrap();
}

/// One open of a watched file: the path, and what the opening thread held at that moment.
#[derive(Debug)]
struct Open {
    path: String,
    pid: i32,
    // Shown in a failure's Debug output: which program opened the file.
    #[allow(dead_code)]
    comm: String,
    uids: String,
    cap_prm: u64,
    cap_eff: u64,
}

/// A fanotify permission watch on the files in some directories: every open of one of them
/// waits until the watcher has read the opening thread's credentials, then is allowed.
struct OpenWatch {
    fd: i32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Open>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OpenWatch {
    fn start(dirs: &[PathBuf]) -> OpenWatch {
        const FAN_REPORT_TID: u32 = 0x100;
        // SAFETY: plain system calls; the descriptor is closed on drop.
        let fd = unsafe { libc::fanotify_init(libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | FAN_REPORT_TID, (libc::O_RDONLY | libc::O_LARGEFILE) as u32) };
        assert!(fd >= 0, "fanotify_init: {}", std::io::Error::last_os_error());
        for d in dirs {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: valid path.
            let r = unsafe { libc::fanotify_mark(fd, libc::FAN_MARK_ADD, libc::FAN_OPEN_PERM | libc::FAN_EVENT_ON_CHILD, libc::AT_FDCWD, c.as_ptr()) };
            assert_eq!(r, 0, "fanotify_mark {}: {}", d.display(), std::io::Error::last_os_error());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
            let mut buf = vec![0u8; 64 * meta];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 50) };
                // SAFETY: reading into our buffer.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    continue;
                }
                let mut off = 0;
                while off + meta <= n as usize {
                    // SAFETY: the kernel wrote whole event records.
                    let ev: libc::fanotify_event_metadata = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                    off += ev.event_len as usize;
                    if ev.fd < 0 {
                        continue;
                    }
                    // The opener is blocked in open(2) until answered: its credentials now are
                    // those it opens with.
                    let status = std::fs::read_to_string(format!("/proc/{}/status", ev.pid)).unwrap_or_default();
                    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(&format!("{k}:")).map(|x| x.trim().to_string())).unwrap_or_default();
                    let hex = |k: &str| u64::from_str_radix(&field(k), 16).unwrap_or(u64::MAX);
                    let path = std::fs::read_link(format!("/proc/self/fd/{}", ev.fd)).map(|p| p.display().to_string()).unwrap_or_default();
                    v.lock().unwrap().push(Open { path, pid: ev.pid, comm: field("Name"), uids: field("Uid"), cap_prm: hex("CapPrm"), cap_eff: hex("CapEff") });
                    let resp = libc::fanotify_response { fd: ev.fd, response: libc::FAN_ALLOW };
                    // SAFETY: answering the event, then closing its descriptor.
                    unsafe {
                        libc::write(fd, (&resp as *const libc::fanotify_response).cast(), std::mem::size_of::<libc::fanotify_response>());
                        libc::close(ev.fd);
                    }
                }
            }
        });
        OpenWatch { fd, stop, seen, thread: Some(thread) }
    }

    fn stop(mut self) -> Vec<Open> {
        self.finish();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn finish(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.fd >= 0 {
            // SAFETY: our descriptor; closing it allows any open still waiting.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.finish();
    }
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn no_input_file_is_opened_with_uid_0_or_a_capability() {
    if !require_root("no_privileged_reads") || !require_tool("no_privileged_reads", "setpriv") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    // Self-check targets: hosts that answer on 25 and 80, so the self-check child runs in full.
    let truth = truth_hosts(&ds);
    let mut refs: Vec<String> = truth.values().filter(|h| h.provider == "OpenCloud Hosting" && !h.ip.contains(':') && h.ports["25"]["expect"]["reply"] == "synack").map(|h| h.ip.clone()).collect();
    refs.sort();
    refs.truncate(2);
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    for (mode, pre) in [("root", vec![]), ("cap_net_raw", vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_raw", "--ambient-caps=+net_raw"])] {
        let out = lab.path(&format!("crawls-{mode}"));
        std::fs::create_dir_all(out.join("_plans")).unwrap();
        if mode != "root" {
            for p in [&out, &out.join("_plans")] {
                std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
        let cfg = lab.path(&format!("crawl-{mode}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[crawl]\nvantage = \"lab-vantage\"\nout = {out:?}\ncrawl_id = \"reads\"\n[inputs]\nroutes = [{routes}]\norgs = [{orgs:?}]\ncategories = [{cats:?}]\nhitlist = [{hit:?}]\naliased = [{ali:?}]\nopt_out = [{opt:?}]\nexclude = [{exc:?}]\n[plan]\nselect = \"all\"\nper_asn = 50\nseed = 25\nallow_reserved = [\"198.18.0.0/15\", \"2001:db8::/32\"]\n[scan]\nasn_rate = 0\nnet_rate = 0\nretries = 0\ncooldown = 1.0\n[self_check]\ntargets = [{targets}]\ncontrol_port = 80\n",
                out = out.display().to_string(),
                routes = list(&ds.routes()),
                orgs = ds.f("lab.as-org2info.jsonl"),
                cats = ds.f("lab_categorized_ases.csv"),
                hit = ds.f("responsive-addresses.txt"),
                ali = ds.f("aliased-prefixes.txt"),
                opt = ds.f("opt-out.txt"),
                exc = ds.f("exclude.txt"),
                targets = list(&refs),
            ),
        )
        .unwrap();
        // Every dataset, and the plan as the plan step writes it and the scan reads it.
        let watch = OpenWatch::start(&[ds.dir.clone(), out.join("_plans")]);
        let o = Command::new("ip").args(["netns", "exec", &lab.state.vantage]).args(&pre).arg(crawler()).args(["--quiet", "run", "--config"]).arg(&cfg).output().unwrap();
        let opens = watch.stop();
        assert!(o.status.success(), "{mode}: {}", String::from_utf8_lossy(&o.stderr));
        let me = std::process::id() as i32;
        let theirs: Vec<&Open> = opens.iter().filter(|x| x.pid != me).collect();
        let privileged: Vec<&&Open> = theirs.iter().filter(|x| x.uids.split_whitespace().any(|u| u == "0") || x.cap_eff != 0 || x.cap_prm != 0).collect();
        let files = |f: &dyn Fn(&str) -> bool| theirs.iter().filter(|x| f(&x.path)).count();
        println!(
            "{mode}: {} opens of input files by the crawler ({} of the plan, {} of opt-out.txt, {} of exclude.txt), {} with uid 0 or a capability",
            theirs.len(),
            files(&|p| p.ends_with(".plan")),
            files(&|p| p.ends_with("opt-out.txt")),
            files(&|p| p.ends_with("exclude.txt")),
            privileged.len()
        );
        assert!(privileged.is_empty(), "{mode}: input files opened with privileges: {privileged:#?}");
        // The watch saw the reads it is there for: the plan step's datasets, the scan's plan,
        // the lists read by the self-check and the scan (each at least twice).
        assert!(files(&|p| p.ends_with(".plan")) >= 1 && files(&|p| p.ends_with("routeviews-rv2-lab.pfx2as")) >= 1, "{mode}: {theirs:#?}");
        assert!(files(&|p| p.ends_with("opt-out.txt")) >= 2 && files(&|p| p.ends_with("exclude.txt")) >= 2, "{mode}: {theirs:#?}");
    }
}
