//! Which paths a sandboxed child may read, and which it may write: the system's libraries and
//! settings every program needs, what its preset adds (the interpreter, the package caches),
//! where its own program and the files named in its arguments live, and what the operator
//! lists. Nothing else is reachable: not `$HOME`, not the servers file, not `/etc/shadow`.
//!
//! Owns: that list. Must not touch: the kernel calls that enforce it.

use std::path::{Path, PathBuf};

use crate::config::{ChildCommand, Preset, SandboxSpec};

/// What every sandboxed program may read: the system's programs and libraries, the loader's
/// cache, TLS roots, name resolution, users and time zones, and what a runtime reads of the
/// machine's memory, CPUs and limits. Of `/proc`, only those files: the child's own
/// `/proc/<pid>` is added in the child itself, and every other process's stays closed.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/mime.types",
    "/etc/os-release",
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/random",
    "/proc/sys/vm/overcommit_memory",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/dev/full",
];

/// Devices every program may write.
const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/tty"];

/// Beneath `$HOME`: the package caches a preset's launcher (`npx`, `uvx`, `pipx`) runs from.
fn home_caches(preset: Preset) -> &'static [&'static str] {
    match preset {
        Preset::Node => &[".npm", ".cache/node", ".nvm", ".volta", ".local/share/pnpm"],
        Preset::Python => &[
            ".cache/pip",
            ".cache/uv",
            ".local/share/uv",
            ".local/pipx",
            ".local/lib",
            ".pyenv",
        ],
    }
}

/// The interpreter a preset runs.
fn interpreter(preset: Preset) -> &'static [&'static str] {
    match preset {
        Preset::Node => &["node"],
        Preset::Python => &["python3", "python"],
    }
}

/// The paths a child of `cmd` may read and write, with `private_tmp` (its own temporary
/// directory) among the writable ones. `path_var` and `home` are the child's `PATH` and
/// `HOME`.
pub fn reachable(
    cmd: &ChildCommand,
    spec: &SandboxSpec,
    path_var: Option<&str>,
    home: Option<&Path>,
    private_tmp: Option<&Path>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    let mut write: Vec<PathBuf> = SYSTEM_WRITE.iter().map(PathBuf::from).collect();
    if let Some(program) = which(&cmd.program, path_var) {
        read.extend(install_roots(&program));
    }
    if let Some(preset) = spec.preset {
        for name in interpreter(preset) {
            if let Some(found) = which(name, path_var) {
                read.extend(install_roots(&found));
            }
        }
        if let Some(home) = home {
            read.extend(home_caches(preset).iter().map(|c| home.join(c)));
        }
    }
    for arg in &cmd.args {
        let path = Path::new(arg);
        if path.is_absolute() && path.exists() {
            read.extend(install_roots(path));
        }
    }
    read.extend(cmd.cwd.iter().cloned());
    read.extend(spec.read_only.iter().cloned());
    write.extend(spec.read_write.iter().cloned());
    write.extend(private_tmp.map(Path::to_path_buf));
    read.sort();
    read.dedup();
    (read, write)
}

/// Where `program` is found: as given when it has a slash, else the first executable file of
/// that name on `path_var`.
pub fn which(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path_var?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a program or script at `path` needs to read to run: for each of the path as given and
/// as resolved (a launcher is often a link into its package), the whole tree of the
/// `node_modules` it lies in, or the prefix or virtualenv of a `bin/` it lies in, or else its
/// directory.
fn install_roots(path: &Path) -> Vec<PathBuf> {
    let mut roots = vec![];
    let resolved = std::fs::canonicalize(path).ok();
    for p in std::iter::once(path).chain(resolved.as_deref()) {
        roots.push(root_of(p));
        // A virtualenv's interpreter is a link to a base installation's, named in its config.
        if let Some(home) = venv_home(p) {
            roots.push(home);
        }
    }
    roots
}

fn root_of(path: &Path) -> PathBuf {
    let components: Vec<_> = path.components().collect();
    if let Some(i) = components
        .iter()
        .position(|c| c.as_os_str() == "node_modules")
    {
        return components[..=i].iter().collect();
    }
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    match dir.file_name() {
        Some(name) if name == "bin" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The base installation a virtualenv at `bin/..` of `path` was made from (`home = …` in its
/// `pyvenv.cfg`), that prefix rather than its `bin`.
fn venv_home(path: &Path) -> Option<PathBuf> {
    let venv = path.parent()?.parent()?;
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let home = cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "home").then(|| PathBuf::from(v.trim()))
    })?;
    Some(root_of(&home.join("python")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(program: &str, args: &[&str]) -> ChildCommand {
        ChildCommand {
            program: program.into(),
            arg0: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
            inherit_env: vec![],
            cwd: None,
            sandbox: None,
        }
    }

    #[test]
    fn a_script_in_node_modules_opens_that_whole_tree_and_nothing_of_home() {
        let dir = std::env::temp_dir().join(format!("sandbox-paths-{}", std::process::id()));
        let script = dir.join("proj/node_modules/@scope/server/dist/index.js");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, "").unwrap();
        let spec = SandboxSpec {
            preset: Some(Preset::Node),
            read_only: vec!["/srv/data".into()],
            read_write: vec!["/srv/out".into()],
            ..SandboxSpec::default()
        };
        let home = Path::new("/home/someone");
        let tmp = dir.join("tmp");
        let (read, write) = reachable(
            &cmd("node", &[script.to_str().unwrap(), "--flag"]),
            &spec,
            Some("/nonexistent"),
            Some(home),
            Some(&tmp),
        );
        let canonical = std::fs::canonicalize(&dir).unwrap();
        assert!(read.contains(&dir.join("proj/node_modules")));
        assert!(read.contains(&canonical.join("proj/node_modules")));
        assert!(read.contains(&home.join(".npm")));
        assert!(!read.iter().any(|p| p == home));
        assert!(read.contains(&PathBuf::from("/srv/data")));
        assert!(read.contains(&PathBuf::from("/usr")));
        assert!(!read.iter().any(|p| p == Path::new("/etc")));
        assert!(write.contains(&PathBuf::from("/srv/out")));
        assert!(write.contains(&tmp));
        assert!(write.contains(&PathBuf::from("/dev/null")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_program_in_a_bin_directory_opens_its_prefix() {
        assert_eq!(
            root_of(Path::new("/opt/venv/bin/mcp-server-time")),
            Path::new("/opt/venv")
        );
        assert_eq!(
            root_of(Path::new("/srv/tools/server")),
            Path::new("/srv/tools")
        );
        assert_eq!(
            root_of(Path::new("/x/node_modules/.bin/server")),
            Path::new("/x/node_modules")
        );
    }

    #[test]
    fn which_searches_path_for_bare_names_only() {
        assert_eq!(
            which("./server", Some("/usr/bin")),
            Some(PathBuf::from("./server"))
        );
        assert_eq!(
            which("sh", Some("/nonexistent:/bin")),
            Some("/bin/sh".into())
        );
        assert_eq!(which("no-such-program-here", Some("/bin")), None);
    }
}
