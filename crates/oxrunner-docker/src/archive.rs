//! Moving files between the runner and a container's file system (the build volume) through the engine's
//! archive endpoints, so no runner path is ever bind-mounted into a job.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::StreamExt;
use futures::future::BoxFuture;
use oxrunner_core::{ExecError, JobFiles};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::error::DockerError;

/// Relative tar path of an absolute container path (`/builds/g/p` → `builds/g/p`).
fn relative(container_dir: &str) -> Result<PathBuf, DockerError> {
    let path = Path::new(container_dir);
    let io_err = |msg: &str| DockerError::Io {
        context: format!("container path {container_dir}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_owned()),
    };
    if !path.is_absolute() {
        return Err(io_err("must be absolute"));
    }
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => rel.push(p),
            _ => return Err(io_err("must not contain `.` or `..`")),
        }
    }
    Ok(rel)
}

/// How files copied into the build volume get their modes and owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Permissions {
    /// gitlab-runner's default: its helper works under `umask 0000`, so whatever user the job image runs as can
    /// change the checkout, restored caches and downloaded artifacts. Files become 0666 (0777 when any exec bit
    /// is set), directories 0777, all owned by root.
    #[default]
    Open,
    /// `FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR`: modes are kept, and the engine gives the files to the container's
    /// user (as gitlab-runner's `chown -R` to the image user's uid/gid does).
    Kept,
}

impl Permissions {
    /// The mode for a job with these variables: [`Permissions::Kept`] when the feature flag is on (the daemon
    /// resolves `[runners.feature_flags]` into `FF_*` job variables).
    pub fn for_variables(vars: &oxrunner_core::Variables) -> Self {
        if vars.bool("FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR").unwrap_or(false) {
            Self::Kept
        } else {
            Self::Open
        }
    }

    fn mode(self, kept: u32, is_dir: bool) -> u32 {
        match self {
            Self::Kept => kept & 0o7777,
            Self::Open if is_dir || kept & 0o111 != 0 => 0o777,
            Self::Open => 0o666,
        }
    }

    /// The engine's `copyUIDGID`: chown what it unpacks to the container's user.
    fn copy_uid_gid(self) -> Option<String> {
        (self == Self::Kept).then(|| "true".to_owned())
    }
}

/// Appends `path` (and, for a directory, everything under it) as `name`. Symlinks are copied as links: a job's
/// checkout may contain links pointing outside it. Sockets have no tar form and are left out.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    perms: Permissions,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let file_type = meta.file_type();
    if std::os::unix::fs::FileTypeExt::is_socket(&file_type) {
        return Ok(());
    }
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    // Owned by root as a root helper would leave them; with `Kept`, the engine maps them to the job's user.
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("")?;
    header.set_groupname("")?;
    if !file_type.is_symlink() {
        header.set_mode(perms.mode(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()),
            file_type.is_dir(),
        ));
    }
    if file_type.is_symlink() {
        let target = std::fs::read_link(path)?;
        builder.append_link(&mut header, name, target)
    } else if file_type.is_file() {
        builder.append_data(&mut header, name, std::fs::File::open(path)?)
    } else if file_type.is_dir() {
        header.set_size(0);
        builder.append_data(&mut header, name, std::io::empty())?;
        let mut entries = std::fs::read_dir(path)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            append_tree(builder, &entry.path(), &name.join(entry.file_name()), perms)?;
        }
        Ok(())
    } else {
        // FIFOs and device nodes: the header from the metadata says it all.
        header.set_size(0);
        builder.append_data(&mut header, name, std::io::empty())
    }
}

/// Tars the contents of `host_dir` as `container_dir`. Missing parents are left to the engine, which creates them
/// (0755); emitting them here would reset the modes of existing ones such as `/tmp`.
fn tar_dir_into(
    host_dir: &Path,
    container_dir: &str,
    perms: Permissions,
    out: &mut std::fs::File,
) -> Result<(), DockerError> {
    let rel = relative(container_dir)?;
    let io = |source| DockerError::Io {
        context: format!("packing {} for the container", host_dir.display()),
        source,
    };
    let mut builder = tar::Builder::new(std::io::BufWriter::new(out));
    let top = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel.as_path()
    };
    // The top directory itself may be reached through a link (an `exec` working tree); its contents are copied.
    let host_dir = std::fs::canonicalize(host_dir).map_err(io)?;
    append_tree(&mut builder, &host_dir, top, perms).map_err(io)?;
    builder.into_inner().map_err(io)?.flush().map_err(io)
}

/// A tar holding only the directories `container_dirs` (in order) with mode 0777.
fn tar_open_dirs(container_dirs: &[String]) -> Result<Vec<u8>, DockerError> {
    let io = |source| DockerError::Io {
        context: format!("packing the directories {}", container_dirs.join(", ")),
        source,
    };
    let mut builder = tar::Builder::new(Vec::new());
    for dir in container_dirs {
        let rel = relative(dir)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o777);
        header.set_size(0);
        builder
            .append_data(&mut header, &rel, std::io::empty())
            .map_err(io)?;
    }
    builder.into_inner().map_err(io)
}

/// Creates `container_dir` (or changes an existing one, e.g. a volume's mount point) with mode 0777, so a job
/// running as any user can write there, as gitlab-runner's helper achieves with `umask 0000`.
pub async fn make_dir_open(docker: &Docker, container: &str, container_dir: &str) -> Result<(), DockerError> {
    make_dirs_open(docker, container, &[container_dir.to_owned()]).await
}

/// [`make_dir_open`] for several directories (parents first) in one request.
pub async fn make_dirs_open(
    docker: &Docker,
    container: &str,
    container_dirs: &[String],
) -> Result<(), DockerError> {
    let container_dir = container_dirs.join(", ");
    let data = tar_open_dirs(container_dirs)?;
    let options = UploadToContainerOptions {
        path: "/".to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(options), bollard::body_full(data.into()))
        .await
        .map_err(DockerError::api(format!("creating {container}:{container_dir}")))
}

fn join_err(context: String, e: tokio::task::JoinError) -> DockerError {
    DockerError::Io {
        context,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Copies the tree under `host_dir` into the container at `container_dir` (created if missing; existing files are
/// overwritten), with modes and owner per `perms`. Works on created and stopped containers; the container's
/// volumes receive the files. The tar is spooled to a temporary file and streamed, so memory stays flat whatever
/// the tree's size.
pub async fn copy_dir_to_container(
    docker: &Docker,
    container: &str,
    host_dir: &Path,
    container_dir: &str,
    perms: Permissions,
) -> Result<(), DockerError> {
    let host = host_dir.to_path_buf();
    let dest = container_dir.to_owned();
    let spool = tokio::task::spawn_blocking(move || -> Result<std::fs::File, DockerError> {
        let io = |source| DockerError::Io {
            context: format!("packing {} for the container", host.display()),
            source,
        };
        let mut file = tempfile::tempfile().map_err(io)?;
        tar_dir_into(&host, &dest, perms, &mut file)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(file)
    })
    .await
    .map_err(|e| join_err(format!("packing {}", host_dir.display()), e))??;
    let stream = ReaderStream::new(tokio::fs::File::from_std(spool));
    let options = UploadToContainerOptions {
        path: "/".to_owned(),
        copy_uidgid: perms.copy_uid_gid(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(options), bollard::body_try_stream(stream))
        .await
        .map_err(DockerError::api(format!(
            "copying {} to {container}:{container_dir}",
            host_dir.display()
        )))
}

/// Copies `container_path` (a file or directory) out of the container into `host_dir`, which receives an entry
/// named like the last component of `container_path`. A path that does not exist copies nothing. The tar is
/// spooled to a temporary file first, so memory stays flat.
pub async fn copy_from_container(
    docker: &Docker,
    container: &str,
    container_path: &str,
    host_dir: &Path,
) -> Result<(), DockerError> {
    let options = DownloadFromContainerOptions {
        path: container_path.to_owned(),
    };
    let io = |source| DockerError::Io {
        context: format!("spooling {container}:{container_path}"),
        source,
    };
    let spool = tempfile::tempfile().map_err(io)?;
    let mut file = tokio::fs::File::from_std(spool);
    let mut stream = docker.download_from_container(container, Some(options));
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => file.write_all(&bytes).await.map_err(io)?,
            Err(e) if crate::error::is_not_found(&e) => return Ok(()),
            Err(e) => {
                return Err(DockerError::api(format!(
                    "copying {container}:{container_path} out"
                ))(e));
            }
        }
    }
    file.flush().await.map_err(io)?;
    let mut spool = file.into_std().await;
    let host = host_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let unpack = |source| DockerError::Io {
            context: format!("unpacking into {}", host.display()),
            source,
        };
        spool.seek(SeekFrom::Start(0)).map_err(unpack)?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(spool));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(&host).map_err(unpack)
    })
    .await
    .map_err(|e| join_err(format!("unpacking into {}", host_dir.display()), e))?
}

/// The job container's files, for the driver's cache and artifact staging.
#[derive(Clone)]
pub struct ContainerFiles {
    docker: Docker,
    container: String,
    perms: Permissions,
}

impl ContainerFiles {
    /// Files of `container` (which mounts the build volume); pushed files get [`Permissions::Open`].
    pub fn new(docker: Docker, container: String) -> Self {
        Self {
            docker,
            container,
            perms: Permissions::Open,
        }
    }

    /// Modes and owner for pushed files (restored caches, downloaded artifacts).
    pub fn with_permissions(mut self, perms: Permissions) -> Self {
        self.perms = perms;
        self
    }
}

impl JobFiles for ContainerFiles {
    fn push<'a>(&'a self, host_dir: &'a Path, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let dest = dir.display().to_string();
            copy_dir_to_container(&self.docker, &self.container, host_dir, &dest, self.perms)
                .await
                .map_err(ExecError::from)
        })
    }

    fn pull<'a>(&'a self, path: &'a Path, host_dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let source = path.display().to_string();
            copy_from_container(&self.docker, &self.container, &source, host_dir)
                .await
                .map_err(ExecError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    /// Packs a small tree and lists `path -> (mode, uid, link target)` of the tar.
    fn packed(perms: Permissions) -> BTreeMap<String, (u32, u64, Option<String>)> {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/private"), "p").unwrap();
        std::fs::write(root.join("tool"), "t").unwrap();
        std::fs::set_permissions(root.join("dir/private"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(root.join("tool"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(root.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("link")).unwrap();

        let mut file = tempfile::tempfile().unwrap();
        tar_dir_into(root, "/builds/g/p", perms, &mut file).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut archive = tar::Archive::new(file);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (
                    e.path().unwrap().display().to_string(),
                    (h.mode().unwrap(), h.uid().unwrap(), link),
                )
            })
            .collect()
    }

    #[test]
    fn open_permissions_mimic_umask_0000_and_root_ownership() {
        let entries = packed(Permissions::Open);
        assert_eq!(entries["builds/g/p"].0, 0o777);
        assert_eq!(entries["builds/g/p/dir"].0, 0o777);
        assert_eq!(entries["builds/g/p/dir/private"].0, 0o666);
        assert_eq!(entries["builds/g/p/tool"].0, 0o777);
        assert_eq!(entries["builds/g/p/link"].2.as_deref(), Some("../outside"));
        assert!(entries.values().all(|(_, uid, _)| *uid == 0), "{entries:?}");
        // Only the copied tree: parents such as `builds` keep the engine's (or the volume's) modes.
        assert!(!entries.contains_key("builds") && !entries.contains_key("builds/g"));
    }

    #[test]
    fn kept_permissions_keep_the_runner_side_modes() {
        let entries = packed(Permissions::Kept);
        assert_eq!(entries["builds/g/p/dir"].0, 0o700);
        assert_eq!(entries["builds/g/p/dir/private"].0, 0o600);
        assert_eq!(entries["builds/g/p/tool"].0, 0o750);
        assert_eq!(Permissions::Kept.copy_uid_gid().as_deref(), Some("true"));
        assert_eq!(Permissions::Open.copy_uid_gid(), None);
    }

    #[test]
    fn the_feature_flag_selects_kept_permissions() {
        let mut vars = oxrunner_core::Variables::new();
        assert_eq!(Permissions::for_variables(&vars), Permissions::Open);
        vars.push(oxrunner_core::Variable::new(
            "FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR",
            "false",
        ));
        assert_eq!(Permissions::for_variables(&vars), Permissions::Open);
        vars.push(oxrunner_core::Variable::new(
            "FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR",
            "1",
        ));
        assert_eq!(Permissions::for_variables(&vars), Permissions::Kept);
    }
}
