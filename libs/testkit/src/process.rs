//! Signalling processes without the `kill` and `pkill` binaries (procps is absent on slim
//! Debian, and a missing `kill` whose status is ignored hangs a test instead of failing
//! it), and pid files that say which executable a pid was, so a stale pid (after a
//! reboot, or a clean stop) is never signalled when it has become someone else's process.

use std::{
    io,
    path::{Path, PathBuf},
};

pub use rustix::process::Signal;

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
    rustix::process::kill_process(pid, signal).map_err(io::Error::from)
}

/// Stops `child`: `signal` first (so it can drain and flush), then, if it is still
/// running after `grace`, SIGKILL; reaped either way.
pub fn stop(child: &mut std::process::Child, signal: Signal, grace: std::time::Duration) {
    let _ = self::signal(child.id(), signal);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The executable process `pid` runs, while it runs (`None` once it is gone).
pub fn executable(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Writes a pid file: the pid and the executable it runs, a line each.
pub fn write_pid_file(path: &Path, pid: u32, exe: &Path) -> io::Result<()> {
    let exe = exe.canonicalize().unwrap_or_else(|_| exe.to_owned());
    std::fs::write(path, format!("{pid}\n{}\n", exe.display()))
}

/// Signals the process a pid file names, only if it still runs the executable the file
/// names: `Ok(true)` when signalled, `Ok(false)` when that process is gone (or the pid
/// now belongs to another program, or the file names no executable).
pub fn signal_pid_file(path: &Path, sig: Signal) -> io::Result<bool> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let (Some(pid), Some(exe)) = (lines.next(), lines.next()) else {
        return Ok(false);
    };
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return Ok(false);
    };
    if executable(pid).is_none_or(|running| running != Path::new(exe.trim())) {
        return Ok(false);
    }
    signal(pid, sig).map(|()| true)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_pid_file_signals_its_own_process_and_never_another_or_a_gone_one() {
        let dir = tempfile::tempdir().unwrap();
        let sleep = crate::find_binary("sleep");
        let mut child = Command::new(&sleep).arg("30").spawn().unwrap();
        let file = dir.path().join("sleep.pid");

        // A pid file naming another executable for this pid: left alone.
        write_pid_file(&file, child.id(), Path::new("/usr/bin/true")).unwrap();
        assert!(!signal_pid_file(&file, Signal::TERM).unwrap());
        assert!(child.try_wait().unwrap().is_none(), "still running");

        // Its own: signalled.
        write_pid_file(&file, child.id(), &sleep).unwrap();
        assert!(signal_pid_file(&file, Signal::TERM).unwrap());
        let status = child.wait().unwrap();
        assert!(!status.success(), "ended by the signal: {status}");

        // Gone: nothing to signal.
        assert!(!signal_pid_file(&file, Signal::TERM).unwrap());
        // An old pid file without an executable: never signalled.
        std::fs::write(&file, format!("{}\n", std::process::id())).unwrap();
        assert!(!signal_pid_file(&file, Signal::TERM).unwrap());
    }
}
