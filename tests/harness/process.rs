//! Child processes that never outlive the test run.

use std::process::{Child, Command, Stdio};

/// A child process killed when dropped and, on Linux, also when the test process dies
/// (parent-death signal), so an aborted `cargo test` leaves no server behind.
pub struct ChildGuard(Child);

impl ChildGuard {
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        command.stdin(Stdio::null());
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on the new process.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().map(Self)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
