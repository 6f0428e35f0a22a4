//! A `redis-server` of a test's own, on a free port, that the test may kill and start again
//! without disturbing the tests that share the machine's Redis; with TLS when asked.
//!
//! Nothing is persisted (`--save '' --appendonly no`): a test that kills it learns what a
//! host does while Redis is away, not what Redis keeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `redis-server` (see the module documentation). Killed when dropped.
pub struct RedisServer {
    pub port: u16,
    tls: Option<Certificates>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A CA and a server certificate it signed, for `127.0.0.1` and `localhost`, in PEM files.
#[derive(Debug, Clone)]
pub struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificates {
    /// Make a fresh CA and server certificate in `dir` with the `openssl` command.
    pub fn generate(dir: &Path) -> Certificates {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl command is installed (the TLS tests make their certificates with it)");
            assert!(
                out.status.success(),
                "openssl {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write server.ext");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=baton test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Certificates { ca: dir.join("ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key") }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local_addr").port()
}

impl RedisServer {
    /// A plain `redis-server` on a free port, once it accepts connections.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// A `redis-server` that speaks TLS only, with `certs`, on a free port (clients need no
    /// certificate of their own). Panics, saying so, when this machine's `redis-server`
    /// cannot serve TLS.
    pub fn start_tls(certs: Certificates) -> RedisServer {
        RedisServer::start_with(Some(certs))
    }

    /// The port is free when asked for, but another process may take it before
    /// `redis-server` binds it: then try another, a few times.
    fn start_with(tls: Option<Certificates>) -> RedisServer {
        let mut r = RedisServer { port: 0, tls, dir: tempfile::tempdir().expect("tempdir"), child: None };
        for _ in 0..4 {
            r.port = free_port();
            match r.try_up() {
                Ok(()) => return r,
                Err(said) if said.contains("Address already in use") => continue,
                Err(said) => r.fail(&said),
            }
        }
        r.port = free_port();
        r.up();
        r
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Start it (again, after [`RedisServer::kill`]) on its port, and wait until it accepts
    /// connections.
    pub fn up(&mut self) {
        if let Err(said) = self.try_up() {
            self.fail(&said);
        }
    }

    fn fail(&self, said: &str) -> ! {
        let what = if self.tls.is_some() {
            "this machine's redis-server cannot serve TLS (it needs one built with TLS support, as Debian's is), or could not use the certificates"
        } else {
            "redis-server did not start"
        };
        panic!("{what} on port {}; it said:\n{said}", self.port);
    }

    /// Start it and wait until it accepts connections; when it exits first, what it logged.
    fn try_up(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(c) => cmd.args(["--port", "0", "--tls-port", &port]).args([
                "--tls-cert-file",
                c.cert.to_str().unwrap(),
                "--tls-key-file",
                c.key.to_str().unwrap(),
                "--tls-ca-cert-file",
                c.ca.to_str().unwrap(),
                "--tls-auth-clients",
                "no",
            ]),
        };
        let child = cmd
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::from(std::fs::File::create(&log).expect("create redis.log")))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the distributed-mode tests need it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("it exited ({status}) saying:\n{said}"));
            }
            assert!(Instant::now() < deadline, "redis-server did not listen on port {} within 10s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL: Redis is gone at once, as when its machine dies.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
