//! A server of the test's own, run by one of the repository's service scripts in a temporary
//! directory on its own port: a test that stops it mid-run disturbs no other test.
#![allow(dead_code)]

use std::process::Command;

pub struct OwnServer {
    /// `scripts/<name>.sh`, whose `EOD_<NAME>_DIR` and `EOD_<NAME>_PORT` it sets.
    name: &'static str,
    dir: tempfile::TempDir,
    pub port: u16,
    /// More environment for the script.
    env: Vec<(String, String)>,
}

impl OwnServer {
    /// Starts `scripts/{name}.sh` on `port`.
    pub fn start(name: &'static str, port: u16) -> OwnServer {
        OwnServer::start_with(name, port, Vec::new())
    }

    /// [`OwnServer::start`] with `env` added to the script's environment on every call.
    pub fn start_with(name: &'static str, port: u16, env: Vec<(String, String)>) -> OwnServer {
        let server = OwnServer {
            name,
            dir: tempfile::tempdir().unwrap(),
            port,
            env,
        };
        server.script("start");
        server
    }

    /// Runs the script with `action` (`start`, `stop`, `env`); returns what it printed.
    pub fn script(&self, action: &str) -> String {
        let prefix = format!("EOD_{}", self.name.to_uppercase());
        let out = Command::new("bash")
            .arg(format!(
                "{}/scripts/{}.sh",
                env!("CARGO_MANIFEST_DIR"),
                self.name
            ))
            .arg(action)
            .env(format!("{prefix}_DIR"), self.dir.path())
            .env(format!("{prefix}_PORT"), self.port.to_string())
            .envs(self.env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}.sh {action}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.script("stop");
    }
}
