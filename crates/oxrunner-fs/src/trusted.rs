//! Opening a root of trust (`builds_dir`, `cache_dir`, the runner's scratch directories) by path.
//!
//! A configured path is not trustworthy just because the administrator wrote it: in the user's guide
//! setup `builds_dir` is `/home/gitlab-runner/builds`, and `/home/gitlab-runner` belongs to the job
//! user, who can rename `builds` and put a symlink in its place. So the path is walked from `/` one
//! component at a time, from directory handles, and a symlink is followed only when the directory that
//! holds it is *trusted*: owned by root or by the runner's effective uid and writable by nobody else.
//! Only such an owner could have put the link there. Links are resolved here, not by the kernel
//! (`readlinkat`, the target's components pushed in front of the rest, an absolute target restarting
//! at `/`), so a trusted link whose target passes through a directory the job user can write still
//! gets no-follow treatment there.
//!
//! Once the walk has passed through an untrusted directory, the rest of the path could have been
//! replaced by that directory's owner, so every later component is opened with
//! `O_NOFOLLOW | O_DIRECTORY` and a symlink is an error. A sticky directory owned by a trusted owner
//! (`/tmp`) is the exception: nobody else can rename or remove what sits in it, so a trusted directory
//! below it (`/tmp/x`, made by root) is trusted again; a link directly inside the sticky directory is
//! followed only when root or the runner owns the link itself.
//!
//! Missing components are created (when asked) in the same walk, relative to the handle, so the new
//! directory is made exactly where the walk stands.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::{DIR_FLAGS, Dir};

/// Linux's own bound on links followed in one resolution (`MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// A symlink that the walk refused because a user who is not trusted could have placed it.
#[derive(Debug)]
pub struct UntrustedLink {
    /// The link, as reached by the walk.
    pub link: PathBuf,
    /// The directory holding it.
    pub dir: PathBuf,
    /// Who can write `dir` (or the untrusted directory above it).
    pub writer: String,
}

impl fmt::Display for UntrustedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a symlink inside a directory {} that {} can write: not followed\n\
             hint: the runner opens builds_dir and cache_dir as root without following links that another \
             user could have placed; replace the link with a real directory, or point the configuration \
             at the link's target",
            self.link.display(),
            self.dir.display(),
            self.writer
        )
    }
}

impl std::error::Error for UntrustedLink {}

/// True when `err` is the walk's refusal of a link that an untrusted user could have placed. Its
/// message already carries a `hint:` line.
pub fn is_untrusted_link(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<UntrustedLink>())
}

/// Who may change a directory, from its `fstat`: `None` when only a trusted owner can.
pub(crate) fn untrusted_writer(st: &rustix::fs::Stat, euid: u32) -> Option<String> {
    let owner_ok = st.st_uid == 0 || st.st_uid == euid;
    if !owner_ok {
        Some(format!("uid {}", st.st_uid))
    } else if st.st_mode & 0o002 != 0 {
        Some("every user".to_owned())
    } else if st.st_mode & 0o020 != 0 {
        Some(format!("group gid {}", st.st_gid))
    } else {
        None
    }
}

fn is_sticky_with_trusted_owner(st: &rustix::fs::Stat, euid: u32) -> bool {
    st.st_mode & 0o1000 != 0 && (st.st_uid == 0 || st.st_uid == euid)
}

/// One directory reached by the walk, with its path for messages.
struct Step {
    fd: OwnedFd,
    path: PathBuf,
}

/// Resolve `path` (made absolute against the current directory) as described in the module docs.
/// `create`: make missing directories with this mode.
pub(crate) fn resolve(path: &Path, create: Option<u32>) -> io::Result<Dir> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let euid = rustix::process::geteuid().as_raw();
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &abs);
    let mut stack = vec![root_step()?];
    // Set once the walk passed an untrusted directory: (the directory, who can write it).
    let mut tainted: Option<(PathBuf, String)> = None;
    let mut links = 0usize;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let cur = stack
            .last()
            .ok_or_else(|| io::Error::other("walk lost its root"))?;
        let st = rustix::fs::fstat(&cur.fd)?;
        let writer = untrusted_writer(&st, euid);
        if tainted.is_none()
            && let Some(w) = &writer
            && !is_sticky_with_trusted_owner(&st, euid)
        {
            tainted = Some((cur.path.clone(), w.clone()));
        }
        let child_path = cur.path.join(&name);
        // In a sticky directory only a link's owner can replace it, so a link root or the runner made
        // there (`oxrunner exec` in `/tmp/mine -> ...`) is as good as one in a trusted directory.
        let sticky = is_sticky_with_trusted_owner(&st, euid);
        let follow = |link_uid: u32| {
            tainted.is_none() && (writer.is_none() || (sticky && (link_uid == 0 || link_uid == euid)))
        };
        match rustix::fs::statat(&cur.fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(lst) if rustix::fs::FileType::from_raw_mode(lst.st_mode) == rustix::fs::FileType::Symlink => {
                if !follow(lst.st_uid) {
                    let (dir, writer) = match (&tainted, writer) {
                        (Some((d, w)), _) => (d.clone(), w.clone()),
                        (None, w) => (cur.path.clone(), w.unwrap_or_default()),
                    };
                    return Err(io::Error::other(UntrustedLink {
                        link: child_path,
                        dir,
                        writer,
                    }));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&cur.fd, name.as_os_str(), Vec::new())?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                push_components(&mut pending, &target);
                continue;
            }
            Ok(_) => {}
            Err(Errno::NOENT) if create.is_some() => {
                let mode = create.unwrap_or(0o755) & 0o7777;
                match rustix::fs::mkdirat(&cur.fd, name.as_os_str(), Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("creating {}: {e}", child_path.display()),
                        ));
                    }
                }
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", child_path.display()))),
        }
        // Even where links may be followed, the open itself never follows one: a link appearing
        // between the lstat and the open (only a trusted owner could place it) is an error, not a detour.
        let fd = rustix::fs::openat(&cur.fd, name.as_os_str(), DIR_FLAGS, Mode::empty())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", child_path.display())))?;
        stack.push(Step { fd, path: child_path });
    }
    let last = stack
        .pop()
        .ok_or_else(|| io::Error::other("walk lost its root"))?;
    Ok(Dir {
        fd: last.fd,
        path: path.to_path_buf(),
    })
}

fn root_step() -> io::Result<Step> {
    let fd = rustix::fs::open(
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Step {
        fd,
        path: PathBuf::from("/"),
    })
}

/// Push `path`'s components so that `pop` yields them in order, in front of what is already pending.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let mut comps: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => comps.push(n.to_os_string()),
            Component::ParentDir => comps.push(OsStr::from_bytes(b"..").to_os_string()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending.extend(comps.into_iter().rev());
}
