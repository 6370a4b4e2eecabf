//! The kernel's walls, prepared in the gateway and raised in the child between `fork` and
//! `exec`: resource limits (`setrlimit`), `no_new_privs`, a Landlock domain (which paths, which
//! TCP ports, no signals or abstract sockets outside it, no ptrace of anything outside it)
//! and a seccomp filter of what an MCP server never needs.
//!
//! Everything that allocates or opens files happens before the fork ([`Prepared::new`]);
//! the child only makes system calls ([`Prepared::raise`]), as it must in a threaded parent.
//!
//! Owns: those kernel calls. Must not touch: which paths and limits a server gets.

use std::{collections::BTreeMap, io, os::fd::AsRawFd, os::fd::OwnedFd, path::PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
    path_beneath_rules,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::config::{Limits, Network};

/// The newest Landlock ABI this gateway asks for (Linux 6.15).
const ABI_WANTED: ABI = ABI::V7;

/// The Landlock ABI the running kernel offers (0: none).
pub fn landlock_abi() -> i32 {
    // SAFETY: landlock_create_ruleset with a null attribute and the VERSION flag only returns
    // the ABI version (or an error); it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    v.max(0) as i32
}

/// Whether the kernel takes seccomp filters.
pub fn seccomp_available() -> bool {
    // SAFETY: PR_GET_SECCOMP only reads the calling thread's mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// Walls ready to be raised in one child.
pub struct Prepared {
    rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// A Landlock ruleset, filled; `None` where the kernel has none.
    landlock: Option<OwnedFd>,
    filters: Vec<BpfProgram>,
}

impl Prepared {
    /// Builds the walls: `read` and `write` are the paths beneath which the child may read
    /// (and execute) and also write.
    pub fn new(
        read: &[PathBuf],
        write: &[PathBuf],
        network: &Network,
        limits: &Limits,
        landlock: bool,
    ) -> io::Result<Prepared> {
        let landlock = if landlock {
            Some(ruleset(read, write, network)?)
        } else {
            None
        };
        Ok(Prepared {
            rlimits: rlimits(limits),
            landlock,
            filters: compiled_filters(network)?,
        })
    }

    /// Raises the walls on the calling process. Runs in the forked child: system calls only.
    pub fn raise(&self) -> io::Result<()> {
        for &(resource, soft, hard) in &self.rlimits {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit reads the struct above.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: prctl with these arguments only sets the flag.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(fd) = &self.landlock {
            own_proc(fd)?;
            // SAFETY: landlock_restrict_self takes a ruleset descriptor we own and no memory.
            if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0u32) } != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        for filter in &self.filters {
            seccompiler::apply_filter(filter)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        }
        Ok(())
    }
}

/// `landlock_path_beneath_attr`, as the kernel reads it (packed).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Lets the child read its own `/proc/<pid>` (what `/proc/self` is): known only once forked,
/// so added to the ruleset (a copy of the gateway's, used by this child alone) in the child.
fn own_proc(ruleset: &OwnedFd) -> io::Result<()> {
    // SAFETY: open takes a NUL-terminated path; the descriptor is closed below.
    let dir = unsafe {
        libc::open(
            c"/proc/self".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    let attr = PathBeneathAttr {
        allowed_access: (AccessFs::ReadFile | AccessFs::ReadDir).bits(),
        parent_fd: dir,
    };
    // SAFETY: landlock_add_rule reads `attr` (rule type 1: path beneath); close takes our fd.
    let rc = unsafe {
        let rc = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            1u32,
            &attr as *const PathBeneathAttr,
            0u32,
        );
        libc::close(dir);
        rc
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Soft and hard limits. CPU time gets a hard limit a few seconds above the soft one, so the
/// child first gets SIGXCPU — which tells why it ended — and SIGKILL only if it ignores that.
fn rlimits(l: &Limits) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let mut out = vec![];
    let mut set = |resource, value: Option<u64>, extra: u64| {
        if let Some(v) = value {
            out.push((resource, v, v.saturating_add(extra)));
        }
    };
    set(libc::RLIMIT_DATA, l.memory, 0);
    set(libc::RLIMIT_CPU, l.cpu_seconds, 5);
    set(libc::RLIMIT_NPROC, l.processes, 0);
    set(libc::RLIMIT_NOFILE, l.open_files, 0);
    set(libc::RLIMIT_FSIZE, l.file_size, 0);
    set(libc::RLIMIT_CORE, Some(0), 0);
    out
}

/// A filled Landlock ruleset: every file access the ABI knows is refused outside `read`
/// (read, list, execute) and `write` (all); TCP bind is refused and TCP connect too but to the
/// listed ports; signals and abstract UNIX sockets stop at the domain's edge.
fn ruleset(read: &[PathBuf], write: &[PathBuf], network: &Network) -> io::Result<OwnedFd> {
    let err = |e: landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(err)?
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(err)?;
    if !matches!(network, Network::All) {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(ABI_WANTED))
            .map_err(err)?;
    }
    let mut created = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(ABI_WANTED)))
        .map_err(err)?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(ABI_WANTED)))
        .map_err(err)?;
    if let Network::Tcp(ports) = network {
        for &port in ports {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(err)?;
        }
    }
    let fd: Option<OwnedFd> = created.into();
    fd.ok_or_else(|| io::Error::other("landlock: the kernel gave no ruleset"))
}

/// The filters for `network`, compiled once per kind (they depend only on whether sockets are
/// allowed).
fn compiled_filters(network: &Network) -> io::Result<Vec<BpfProgram>> {
    static COMPILED: [std::sync::OnceLock<Result<Vec<BpfProgram>, String>>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let no_sockets = matches!(network, Network::None);
    COMPILED[no_sockets as usize]
        .get_or_init(|| filters(network).map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

/// System calls an MCP server has no business making, refused with EPERM: debugging or
/// reading other processes, mounting, namespaces, kernel modules and keys, rebooting, the
/// clock, BPF and perf, io_uring (which would bypass the rest) — and, without a network,
/// opening sockets (socket pairs still work). `clone3` answers ENOSYS so the C library falls
/// back to `clone`, whose flags can be checked: no new namespaces.
fn filters(network: &Network) -> io::Result<Vec<BpfProgram>> {
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        return Err(io::Error::other(
            "seccomp: this architecture is not supported",
        ));
    };
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fsconfig,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_vhangup,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    #[cfg(target_arch = "x86_64")]
    for nr in [libc::SYS_iopl, libc::SYS_ioperm] {
        denied.insert(nr, vec![]);
    }
    if matches!(network, Network::None) {
        denied.insert(libc::SYS_socket, vec![]);
    }
    let namespaces = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64;
    let seccomp = |e: seccompiler::BackendError| io::Error::other(format!("seccomp: {e}"));
    // Every namespace flag is tested on its own: a rule matches when all its conditions do.
    let mut clone_rules = vec![];
    for bit in (0..64).map(|b| 1u64 << b).filter(|b| namespaces & b != 0) {
        let cond =
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(bit), bit)
                .map_err(seccomp)?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(seccomp)?);
    }
    denied.insert(libc::SYS_clone, clone_rules);
    let program = |rules, errno| -> io::Result<BpfProgram> {
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
        .map_err(seccomp)?
        .try_into()
        .map_err(seccomp)
    };
    Ok(vec![
        program(denied, libc::EPERM as u32)?,
        program([(libc::SYS_clone3, vec![])].into(), libc::ENOSYS as u32)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_every_network() {
        for n in [Network::None, Network::All, Network::Tcp(vec![443])] {
            let f = filters(&n).unwrap();
            assert_eq!(f.len(), 2);
            assert!(!f[0].is_empty());
        }
    }

    #[test]
    fn limits_become_rlimits_with_a_cpu_grace() {
        let l = rlimits(&Limits {
            memory: Some(1 << 30),
            cpu_seconds: Some(10),
            ..Limits::default()
        });
        assert!(l.contains(&(libc::RLIMIT_DATA, 1 << 30, 1 << 30)));
        assert!(l.contains(&(libc::RLIMIT_CPU, 10, 15)));
        assert!(l.contains(&(libc::RLIMIT_CORE, 0, 0)));
        assert!(!l.iter().any(|(r, _, _)| *r == libc::RLIMIT_NPROC));
    }
}
