//! Directory handles that never follow a symlink.
//!
//! The runner often runs as root while a job runs as another user (`--user`) who owns the build
//! directory. Anything the job user can write may change between two system calls of ours, so a path
//! that is checked and then opened can be swapped for a symlink in between (`renameat2(RENAME_EXCHANGE)`
//! wins such races easily). The rule this crate enforces:
//!
//! - **Roots of trust** are directories the job user cannot change: the configured `builds_dir` and
//!   `cache_dir`, and runner-private temporary directories. Only they are opened by path, once
//!   ([`Dir::open_trusted`], [`Dir::create_trusted`]), by a walk from `/` that follows a symlink only
//!   where no other user could have placed it (module `trusted`): `builds_dir` often sits in the job
//!   user's home, so the configured path itself is not enough.
//! - **Everything below a root** is reached from a [`Dir`] handle, with no symlink followed at any
//!   component: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` where the kernel
//!   has it, else a walk of `openat(O_NOFOLLOW | O_DIRECTORY)` one component at a time. Single names
//!   (create, unlink, symlink, lstat, readlink) act on a handle with `*at` calls that do not follow a
//!   link in the last component either.
//! - **Attributes change through descriptors** (`fchmod`, `fchown`, `futimens`), never by path.
//!
//! A symlink met on the way is an error ([`is_link_refusal`] tells it apart), never a detour: the
//! worst a racing job can achieve is failing its own cache or artifact step.
//!
//! **Reading what a job collects** is the one exception (the `*_in_tree` methods): gitlab-runner
//! follows links on the way to an artifact or cache path (`current -> releases/3`), so these resolve
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`. The kernel follows relative links, and `..`,
//! only while the resolution stays beneath the handle, and refuses absolute links and escapes with
//! `EXDEV`, atomically, so a racing job still cannot steer a read outside. The last component is never
//! followed where it is a file (a link there is read as a link). Without `openat2` these fall back to
//! the component walk, which refuses every link on the way (more conservative than gitlab-runner).
//! Nothing that writes uses them.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// What an entry is, from `lstat` or a directory listing. Links are never resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFOs, sockets, devices: never opened.
    Other,
}

/// `lstat` of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits and file type bits, as in `st_mode`.
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub uid: u32,
    pub gid: u32,
    /// Number of hard links.
    pub nlink: u64,
}

impl Meta {
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => Kind::File,
            rustix::fs::FileType::Directory => Kind::Dir,
            rustix::fs::FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        Meta {
            kind,
            mode: st.st_mode,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            mtime_nsec: i64::try_from(st.st_mtime_nsec).unwrap_or(0),
            uid: st.st_uid,
            gid: st.st_gid,
            // `nlink_t` is 32 bits on some architectures (aarch64), 64 on x86_64.
            #[allow(clippy::useless_conversion)]
            nlink: u64::from(st.st_nlink),
        }
    }
}

/// An open directory. The path is kept for messages only and is never resolved again.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Whether `openat2` works here: 0 unknown, 1 yes, 2 no (old kernel, or seccomp refusing it).
static OPENAT2: AtomicU8 = AtomicU8::new(0);

/// Resolve by walking one component at a time from now on, as on kernels without `openat2`. For
/// tests that must cover the fallback; both strategies give the same answers.
pub fn resolve_by_walking() {
    OPENAT2.store(2, Ordering::Relaxed);
}

/// True for the errors this crate returns when a symlink (or something that is not a directory) stands
/// where a directory was needed: the caller met a link and did not follow it.
pub fn is_link_refusal(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::LOOP | Errno::XDEV | Errno::NOTDIR)
    )
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

/// A single path component, so a `*at` call on it cannot walk anywhere else.
fn single(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(invalid("not a single file name"));
    }
    Ok(name)
}

/// The normal components of a relative path; anything else (`..`, absolute) is refused.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(invalid("path is not a plain relative path")),
        }
    }
    Ok(out)
}

pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Open a root of trust by path, following a symlink only where no untrusted user could have placed
    /// it (see the `trusted` module: a link inside a directory the job user can write is an error).
    pub fn open_trusted(path: &Path) -> io::Result<Dir> {
        trusted::resolve(path, None)
    }

    /// [`Dir::open_trusted`], creating missing directories (mode 0755) in the same walk.
    pub fn create_trusted(path: &Path) -> io::Result<Dir> {
        trusted::resolve(path, Some(0o755))
    }

    /// Who besides root and the runner could change this directory's entries (`uid N`, `group gid N`,
    /// `every user`), or `None` when nobody else can.
    pub fn untrusted_writer(&self) -> io::Result<Option<String>> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok(trusted::untrusted_writer(
            &st,
            rustix::process::geteuid().as_raw(),
        ))
    }

    /// The path this handle was opened as, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/self/fd/N`: lets a child process `chdir` into exactly this directory (the kernel resolves
    /// the magic link to the open directory, whatever happened to its path since).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Another handle to the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?,
            path: self.path.clone(),
        })
    }

    /// Open the directory `rel` beneath this one. No symlink is followed at any component, and `rel`
    /// must not contain `..` or be absolute. An empty `rel` gives a new handle to this directory.
    pub fn open_dir(&self, rel: &Path) -> io::Result<Dir> {
        let fd = self.open_beneath(rel, DIR_FLAGS, Mode::empty())?;
        Ok(Dir {
            fd,
            path: self.path.join(rel),
        })
    }

    /// The parent directory of `rel` and `rel`'s last component.
    pub fn open_parent<'r>(&self, rel: &'r Path) -> io::Result<(Dir, &'r OsStr)> {
        let name = rel.file_name().ok_or_else(|| invalid("path has no file name"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.open_dir(parent)?, name))
    }

    /// Open the regular file `rel` for reading. Symlinks are not followed anywhere; FIFOs, devices and
    /// sockets are refused without blocking on them.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = self.open_beneath(rel, flags, Mode::empty())?;
        regular_file(fd)
    }

    /// Create `name` in this directory; it must not exist (O_EXCL, so not even a dangling link is
    /// followed). Mode is applied through the descriptor, so the umask does not change it.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let name = single(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(File::from(fd))
    }

    /// Make `rel` (and any missing parents) beneath this directory and open it. An existing symlink or
    /// file on the way is an error, never followed.
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        let mut cur = self.try_clone()?;
        for comp in components(rel)? {
            cur = cur.create_dir(comp, mode)?;
        }
        cur.path = self.path.join(rel);
        Ok(cur)
    }

    /// Open the child directory `name`, creating it first if it does not exist.
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> io::Result<Dir> {
        let name = single(name)?;
        let open = || rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty());
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode & 0o7777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open()?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// `lstat` of `name` in this directory.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Meta> {
        let name = single(name)?;
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Meta::from_stat(&st))
    }

    /// `lstat` of `rel` beneath this directory (its parents are walked without following links).
    pub fn lstat_path(&self, rel: &Path) -> io::Result<Meta> {
        let (parent, name) = self.open_parent(rel)?;
        parent.lstat(name)
    }

    /// `fstat` of this directory itself.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(Meta::from_stat(&rustix::fs::fstat(&self.fd)?))
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let name = single(name)?;
        let target = rustix::fs::readlinkat(&self.fd, name, Vec::new())?;
        Ok(OsString::from_vec(target.into_bytes()))
    }

    /// Create the symlink `name` pointing at `target`. Any target is fine: creating a link writes
    /// nothing through it, and this crate never follows one.
    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        let name = single(name)?;
        Ok(rustix::fs::symlinkat(target, &self.fd, name)?)
    }

    /// Remove the non-directory `name` (a link is removed, not what it points to).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, single(name)?, AtFlags::empty())?)
    }

    /// Remove the empty directory `name`.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, single(name)?, AtFlags::REMOVEDIR)?)
    }

    /// Remove `name` and, if it is a real directory, everything below it. Links are removed, never
    /// followed, so nothing outside this directory is touched.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        match self.lstat(name) {
            Ok(m) if m.kind == Kind::Dir => {}
            Ok(_) => return self.unlink(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let child = self.open_dir(Path::new(name))?;
        for (entry, _) in child.entries()? {
            child.remove_all(&entry)?;
        }
        self.remove_dir(name)
    }

    /// Rename `from` to `to`, both in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.fd,
            single(from)?,
            &self.fd,
            single(to)?,
        )?)
    }

    /// Every entry of this directory except `.` and `..`, with its type as the listing reports it
    /// (an entry whose type the file system does not report is `lstat`ed).
    pub fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let kind = match entry.file_type() {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::Symlink => Kind::Symlink,
                rustix::fs::FileType::Unknown => match self.lstat(&name) {
                    Ok(m) => m.kind,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
                _ => Kind::Other,
            };
            out.push((name, kind));
        }
        Ok(out)
    }

    /// `fchmod` of this directory.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode & 0o7777))?)
    }

    /// `futimens` of this directory: modification time set, access time left alone.
    pub fn set_mtime(&self, secs: i64) -> io::Result<()> {
        set_fd_mtime(self.fd.as_fd(), secs)
    }

    /// `fchown` of this directory.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        fchown(self.fd.as_fd(), uid, gid)
    }

    /// Modification time of the symlink `name` itself (never of its target).
    pub fn set_link_mtime(&self, name: &OsStr, secs: i64) -> io::Result<()> {
        let times = Timestamps {
            last_access: omit(),
            last_modification: Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        };
        Ok(rustix::fs::utimensat(
            &self.fd,
            single(name)?,
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Owner of the entry `name` itself (a link's own owner, never its target's).
    pub fn chown_entry(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            single(name)?,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Open the directory `rel` beneath this one for reading, following links on the way and in the last
    /// component as long as they resolve beneath this directory (see the module docs).
    pub fn open_dir_in_tree(&self, rel: &Path) -> io::Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = self.open_in_tree(rel, flags, use_openat2())?;
        Ok(Dir {
            fd,
            path: self.path.join(rel),
        })
    }

    /// The parent directory of `rel`, reached with [`Dir::open_dir_in_tree`], and `rel`'s last component.
    pub fn open_parent_in_tree<'r>(&self, rel: &'r Path) -> io::Result<(Dir, &'r OsStr)> {
        let name = rel.file_name().ok_or_else(|| invalid("path has no file name"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.open_dir_in_tree(parent)?, name))
    }

    /// `lstat` of `rel`: links on the way are followed while they stay beneath this directory, the last
    /// component is not followed.
    pub fn lstat_path_in_tree(&self, rel: &Path) -> io::Result<Meta> {
        let (parent, name) = self.open_parent_in_tree(rel)?;
        parent.lstat(name)
    }

    /// [`Dir::open_file`], with links on the way followed while they stay beneath this directory. A
    /// link as the last component is refused, as in [`Dir::open_file`].
    pub fn open_file_in_tree(&self, rel: &Path) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = self.open_in_tree(rel, flags, use_openat2())?;
        let file = regular_file(fd)?;
        let st = rustix::fs::fstat(&file)?;
        if self.is_foreign_hard_link(&Meta::from_stat(&st))? {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is a hard link to a file of uid {}, not of the directory's owner: not read",
                    self.path.join(rel).display(),
                    st.st_uid
                ),
            ));
        }
        Ok(file)
    }

    /// True for a regular file with more than one hard link whose owner is not the owner of this
    /// directory, when this directory belongs to another user than the runner. A job user can hard-link
    /// any file of the same file system into its tree where `fs.protected_hardlinks` is 0 (`ln
    /// /etc/shadow out.txt`); root collecting that tree must not read it. A file linked only within the
    /// user's own files keeps that user's uid and is still collected.
    pub fn is_foreign_hard_link(&self, m: &Meta) -> io::Result<bool> {
        if m.kind != Kind::File || m.nlink <= 1 {
            return Ok(false);
        }
        let owner = rustix::fs::fstat(&self.fd)?.st_uid;
        Ok(owner != rustix::process::geteuid().as_raw() && m.uid != owner)
    }

    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, or the no-follow walk when `openat2` is
    /// unavailable (or `try_openat2` is false, for tests of the fallback).
    fn open_in_tree(&self, rel: &Path, flags: OFlags, try_openat2: bool) -> io::Result<OwnedFd> {
        let comps = components(rel)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(rustix::fs::openat(&self.fd, ".", flags, Mode::empty())?);
        };
        if try_openat2 {
            let joined: PathBuf = comps.iter().collect();
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            // EAGAIN: a rename elsewhere on the system raced a `..` step and the kernel could not
            // prove the resolution stayed beneath. Retrying is cheap; the walk is the last resort.
            for _ in 0..8 {
                match rustix::fs::openat2(&self.fd, &joined, flags, Mode::empty(), resolve) {
                    Err(Errno::NOSYS | Errno::PERM) if OPENAT2.load(Ordering::Relaxed) == 0 => {
                        OPENAT2.store(2, Ordering::Relaxed);
                        break;
                    }
                    Err(Errno::AGAIN) => {}
                    other => {
                        OPENAT2.store(1, Ordering::Relaxed);
                        return Ok(other?);
                    }
                }
            }
        }
        self.walk_beneath(parents, last, flags, Mode::empty())
    }

    fn open_beneath(&self, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let comps = components(rel)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(rustix::fs::openat(&self.fd, ".", flags, mode)?);
        };
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            let joined: PathBuf = comps.iter().collect();
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, &joined, flags, mode, resolve) {
                // Seccomp filters and kernels before 5.6 refuse the call itself; then walk instead.
                Err(Errno::NOSYS | Errno::PERM) if OPENAT2.load(Ordering::Relaxed) == 0 => {
                    OPENAT2.store(2, Ordering::Relaxed);
                }
                // EAGAIN: a concurrent rename somewhere on the system made the kernel give up.
                Err(Errno::AGAIN) => {}
                other => {
                    OPENAT2.store(1, Ordering::Relaxed);
                    return Ok(other?);
                }
            }
        }
        self.walk_beneath(parents, last, flags, mode)
    }

    /// The fallback of [`Dir::open_beneath`]: one `openat(O_NOFOLLOW)` per component.
    fn walk_beneath(
        &self,
        parents: &[&OsStr],
        last: &OsStr,
        flags: OFlags,
        mode: Mode,
    ) -> io::Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        for comp in parents {
            let base: BorrowedFd<'_> = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            cur = Some(rustix::fs::openat(base, *comp, DIR_FLAGS, Mode::empty())?);
        }
        let base: BorrowedFd<'_> = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        Ok(rustix::fs::openat(base, last, flags | OFlags::NOFOLLOW, mode)?)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn use_openat2() -> bool {
    OPENAT2.load(Ordering::Relaxed) != 2
}

/// `fd` as a [`File`] if it is a regular file.
fn regular_file(fd: OwnedFd) -> io::Result<File> {
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    // Regular files ignore O_NONBLOCK; it only kept the open from hanging on a FIFO.
    Ok(File::from(fd))
}

fn omit() -> Timespec {
    Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_OMIT,
    }
}

/// `futimens` on any descriptor: modification time set, access time left alone.
pub fn set_fd_mtime(fd: BorrowedFd<'_>, secs: i64) -> io::Result<()> {
    let times = Timestamps {
        last_access: omit(),
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    Ok(rustix::fs::futimens(fd, &times)?)
}

/// `fchown` on any descriptor.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?)
}

#[cfg(test)]
mod tests;
mod trusted;

pub use trusted::{UntrustedLink, is_untrusted_link};
