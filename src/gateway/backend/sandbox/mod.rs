//! Spawn-time walls around a child: what it is given from the gateway's environment
//! ([`inherited`], for every child), and for a server with a `sandbox` (Linux) what it may
//! reach — paths, network, other processes — and use: memory, CPU time, processes, files.
//!
//! [`Walls::prepare`] turns the server's [`SandboxSpec`] into what one child gets: the paths
//! ([`paths`]), its own temporary directory (removed when it ends), the user it runs as, and
//! the kernel's walls ([`linux`]) raised between fork and exec. A kernel that lacks a wall
//! the spec needs makes the spawn fail with the reason, so the server is reported as not
//! started — unless the operator said `allowUnsandboxed`, which runs it with the walls there
//! are and a warning.
//!
//! Owns: what a child is given and allowed before it runs. Must not touch: spawning or reaping
//! it.

mod env;
#[cfg(target_os = "linux")]
mod linux;
mod paths;

use std::{
    ffi::{OsStr, OsString},
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

pub use env::{DEFAULT_INHERITED, inherited, valid_pattern};

use crate::config::{ChildCommand, Network, SandboxSpec};

/// The walls of one child, ready to be put on its command.
pub struct Walls {
    #[cfg(target_os = "linux")]
    kernel: Option<linux::Prepared>,
    /// Its own temporary directory (`TMPDIR`), removed when it ends.
    pub tmp: PathBuf,
    user: Option<(u32, u32)>,
}

impl Walls {
    /// The walls for a child of `cmd`, whose environment will be `env`; `None` when the server
    /// has no sandbox.
    pub fn prepare(cmd: &ChildCommand, env: &[(OsString, OsString)]) -> io::Result<Option<Walls>> {
        let Some(spec) = &cmd.sandbox else {
            return Ok(None);
        };
        let user = spec.run_as.as_deref().map(user).transpose()?;
        // SAFETY: geteuid has no arguments.
        let me = unsafe { libc::geteuid() };
        if let Some((uid, _)) = user
            && uid != me
            && me != 0
        {
            return Err(io::Error::other(format!(
                "sandbox: runAs needs the gateway to run as root (it runs as uid {me})"
            )));
        }
        let tmp = private_tmp(user)?;
        let get = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.to_str())
        };
        let home = get("HOME").map(Path::new);
        let (read, write) = paths::reachable(cmd, spec, get("PATH"), home, Some(&tmp));
        let walls = Walls {
            #[cfg(target_os = "linux")]
            kernel: match kernel(spec, &read, &write) {
                Ok(k) => k,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(e);
                }
            },
            tmp,
            user,
        };
        #[cfg(not(target_os = "linux"))]
        if !spec.allow_unsandboxed {
            let _ = std::fs::remove_dir_all(&walls.tmp);
            return Err(io::Error::other(
                "sandbox: walls are built on Linux (Landlock, seccomp); set allowUnsandboxed to run this server without them",
            ));
        }
        Ok(Some(walls))
    }

    /// Variables the walls set in the child's environment: its temporary directory (and, when
    /// it runs as another user, its home).
    pub fn env(&self) -> Vec<(&'static str, &OsStr)> {
        let tmp = self.tmp.as_os_str();
        let mut vars = vec![("TMPDIR", tmp), ("TMP", tmp), ("TEMP", tmp)];
        if self.user.is_some() {
            vars.push(("HOME", tmp));
        }
        vars
    }

    /// Puts the walls on `command`: its user, and the kernel's walls raised before exec.
    pub fn install(self, command: &mut tokio::process::Command) {
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        #[cfg(target_os = "linux")]
        if let Some(kernel) = self.kernel {
            // SAFETY: `raise` only makes system calls (setrlimit, prctl, landlock, seccomp) on
            // data prepared before the fork: nothing allocates or locks in the child.
            unsafe {
                command.pre_exec(move || kernel.raise());
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn kernel(
    spec: &SandboxSpec,
    read: &[PathBuf],
    write: &[PathBuf],
) -> io::Result<Option<linux::Prepared>> {
    let status = kernel_status();
    let mut missing = vec![];
    if status.landlock_abi == 0 {
        missing.push("Landlock (Linux 5.13+, with landlock among the boot's lsm=)");
    } else if status.landlock_abi < 4 && matches!(spec.network, Network::Tcp(_)) {
        missing.push("Landlock's TCP rules (Linux 6.7+), which the network's port list needs");
    }
    if !status.seccomp {
        missing.push("seccomp");
    }
    if !missing.is_empty() {
        let what = missing.join(" and ");
        if !spec.allow_unsandboxed {
            return Err(io::Error::other(format!(
                "sandbox: this kernel lacks {what}; refusing to start the server without those walls (allowUnsandboxed: true runs it anyway)"
            )));
        }
        tracing::warn!(
            "sandbox: this kernel lacks {what}; running the child without it (allowUnsandboxed)"
        );
        if !status.seccomp {
            return Ok(None);
        }
    }
    linux::Prepared::new(
        read,
        write,
        &spec.network,
        &spec.limits,
        status.landlock_abi > 0,
    )
    .map(Some)
}

/// What the running kernel gives the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct KernelStatus {
    /// 0: no Landlock (no path or port walls).
    pub landlock_abi: i32,
    pub seccomp: bool,
}

/// Read once: the kernel does not change under a running gateway.
pub fn kernel_status() -> KernelStatus {
    static STATUS: std::sync::OnceLock<KernelStatus> = std::sync::OnceLock::new();
    *STATUS.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            KernelStatus {
                landlock_abi: linux::landlock_abi(),
                seccomp: linux::seccomp_available(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        KernelStatus {
            landlock_abi: 0,
            seccomp: false,
        }
    })
}

/// A limit that ended a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Cpu,
    FileSize,
    Memory,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Cpu => "cpu",
            Limit::FileSize => "file_size",
            Limit::Memory => "memory",
        }
    }

    /// The limit behind a child's death by `signal`, if the kernel sends it for one (SIGXCPU,
    /// SIGXFSZ), or if the child died aborting after it said it ran out of memory.
    pub fn of_signal(signal: i32, said_out_of_memory: bool) -> Option<Limit> {
        match signal {
            libc::SIGXCPU => Some(Limit::Cpu),
            libc::SIGXFSZ => Some(Limit::FileSize),
            libc::SIGABRT | libc::SIGTRAP | libc::SIGSEGV | libc::SIGKILL | libc::SIGILL
                if said_out_of_memory =>
            {
                Some(Limit::Memory)
            }
            _ => None,
        }
    }

    /// Whether a line of a child's stderr says it ran out of memory (V8, Rust, CPython, glibc).
    pub fn says_out_of_memory(line: &str) -> bool {
        [
            "out of memory",
            "memory allocation of",
            "MemoryError",
            "Allocation failed",
            "Cannot allocate memory",
        ]
        .iter()
        .any(|s| line.contains(s))
    }
}

static LIMIT_KILLS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts a child ended by `limit` (for `/health`; `/metrics` counts it by exit cause).
pub fn count_limit_kill(limit: Limit) {
    LIMIT_KILLS[limit as usize].fetch_add(1, Ordering::Relaxed);
}

/// The sandbox's part of `/health`.
pub fn health() -> serde_json::Value {
    let k = kernel_status();
    let kills: serde_json::Map<_, _> = [Limit::Cpu, Limit::FileSize, Limit::Memory]
        .into_iter()
        .map(|l| {
            let n = LIMIT_KILLS[l as usize].load(Ordering::Relaxed);
            (l.as_str().to_string(), n.into())
        })
        .collect();
    serde_json::json!({
        "landlock_abi": k.landlock_abi,
        "landlock_network": k.landlock_abi >= 4,
        "seccomp": k.seccomp,
        "limits": "rlimits per child; cgroups are not used (memory and processes are not pooled per server)",
        "limit_kills": kills,
    })
}

/// A server's sandbox as `/health` shows it.
pub fn describe(spec: &SandboxSpec) -> serde_json::Value {
    let l = &spec.limits;
    serde_json::json!({
        "preset": match spec.preset {
            Some(crate::config::Preset::Node) => "node",
            Some(crate::config::Preset::Python) => "python",
            None => "none",
        },
        "network": match &spec.network {
            Network::None => serde_json::json!("none"),
            Network::All => serde_json::json!("all"),
            Network::Tcp(ports) => serde_json::json!(ports),
        },
        "read_only": spec.read_only,
        "read_write": spec.read_write,
        "limits": {"memory": l.memory, "cpu_seconds": l.cpu_seconds, "processes": l.processes,
                   "open_files": l.open_files, "file_size": l.file_size},
        "run_as": spec.run_as,
    })
}

/// Where children's private temporary directories live: one folder per gateway process.
fn tmp_base() -> PathBuf {
    std::env::temp_dir().join(format!("aareguru-mcp-{}", std::process::id()))
}

/// Removes what gateways that died without cleaning up left of their children's directories.
fn sweep_stale_tmp() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("aareguru-mcp-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            remove_tmp(&entry.path());
        }
    }
}

/// A new directory only the child (`user`, or the gateway's) may enter.
fn private_tmp(user: Option<(u32, u32)>) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_stale_tmp);
    let base = tmp_base();
    let dir = base.join(format!("child-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let make = || std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // The gateway's folder is made on first use (and again if a cleaner removed it).
    if let Err(e) = make() {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&base)?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711))?;
        make()?;
    }
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    Ok(dir)
}

/// Removes a child's temporary directory, once nothing of it runs.
pub fn remove_tmp(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), "cannot remove a child's temporary directory: {e}");
    }
}

/// The uid and gid of `name` (a user name, or a number).
fn user(name: &str) -> io::Result<(u32, u32)> {
    let unknown = || io::Error::other(format!("sandbox: runAs: there is no user {name:?}"));
    let c_name = std::ffi::CString::new(name).map_err(|_| unknown())?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r/getpwuid_r write into `pwd` and `buf` (its length given) and set
    // `found` to `&pwd` or null; nothing is kept beyond this call.
    let rc = unsafe {
        match name.parse::<u32>() {
            Ok(uid) => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found),
            Err(_) => libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            ),
        }
    };
    if rc != 0 || found.is_null() {
        return match name.parse::<u32>() {
            // A bare number without a passwd entry is still a user: its own group.
            Ok(uid) => Ok((uid, uid)),
            Err(_) => Err(unknown()),
        };
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_and_number() {
        assert_eq!(user("root").unwrap(), (0, 0));
        assert_eq!(user("0").unwrap(), (0, 0));
        assert_eq!(user("4242").unwrap(), (4242, 4242));
        assert!(user("no-such-user-here").is_err());
    }

    #[test]
    fn limits_are_named_by_the_signal_or_what_the_child_said() {
        assert_eq!(Limit::of_signal(libc::SIGXCPU, false), Some(Limit::Cpu));
        assert_eq!(
            Limit::of_signal(libc::SIGXFSZ, false),
            Some(Limit::FileSize)
        );
        assert_eq!(Limit::of_signal(libc::SIGABRT, true), Some(Limit::Memory));
        assert_eq!(Limit::of_signal(libc::SIGABRT, false), None);
        assert_eq!(Limit::of_signal(libc::SIGTERM, true), None);
        assert!(Limit::says_out_of_memory(
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"
        ));
        assert!(!Limit::says_out_of_memory("listening"));
    }
}
