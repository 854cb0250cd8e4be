//! Moving files between the runner and a container's file system (the build volume) through the engine's
//! archive endpoints, so no runner path is ever bind-mounted into a job.

use std::path::{Component, Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::TryStreamExt;

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

/// Tars the contents of `host_dir` as `container_dir`. Missing parents are left to the engine, which creates them
/// (0755); emitting them here would reset the modes of existing ones such as `/tmp`.
fn tar_dir(host_dir: &Path, container_dir: &str) -> Result<Vec<u8>, DockerError> {
    let rel = relative(container_dir)?;
    let io = |source| DockerError::Io {
        context: format!("packing {} for the container", host_dir.display()),
        source,
    };
    let mut builder = tar::Builder::new(Vec::new());
    // Symlinks are copied as links: a job's checkout may contain links pointing outside it.
    builder.follow_symlinks(false);
    let top = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel.as_path()
    };
    builder.append_dir_all(top, host_dir).map_err(io)?;
    builder.into_inner().map_err(io)
}

/// A tar holding only the directory `container_dir` with mode 0777.
fn tar_open_dir(container_dir: &str) -> Result<Vec<u8>, DockerError> {
    let rel = relative(container_dir)?;
    let io = |source| DockerError::Io {
        context: format!("packing the directory {container_dir}"),
        source,
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o777);
    header.set_size(0);
    builder
        .append_data(&mut header, &rel, std::io::empty())
        .map_err(io)?;
    builder.into_inner().map_err(io)
}

/// Creates `container_dir` (or changes an existing one, e.g. a volume's mount point) with mode 0777, so a job
/// running as any user can write there, as gitlab-runner's helper achieves with `umask 0000`.
pub async fn make_dir_open(docker: &Docker, container: &str, container_dir: &str) -> Result<(), DockerError> {
    let data = tar_open_dir(container_dir)?;
    let options = UploadToContainerOptions {
        path: "/".to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(options), bollard::body_full(data.into()))
        .await
        .map_err(DockerError::api(format!("creating {container}:{container_dir}")))
}

/// Copies the tree under `host_dir` into the container at `container_dir` (created if missing; existing files are
/// overwritten). Works on created and stopped containers; the container's volumes receive the files.
pub async fn copy_dir_to_container(
    docker: &Docker,
    container: &str,
    host_dir: &Path,
    container_dir: &str,
) -> Result<(), DockerError> {
    let host = host_dir.to_path_buf();
    let dest = container_dir.to_owned();
    let data = tokio::task::spawn_blocking(move || tar_dir(&host, &dest))
        .await
        .map_err(|e| DockerError::Io {
            context: format!("packing {}", host_dir.display()),
            source: std::io::Error::other(e.to_string()),
        })??;
    let options = UploadToContainerOptions {
        path: "/".to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(options), bollard::body_full(data.into()))
        .await
        .map_err(DockerError::api(format!(
            "copying {} to {container}:{container_dir}",
            host_dir.display()
        )))
}

/// Copies `container_path` (a file or directory) out of the container into `host_dir`, which receives an entry
/// named like the last component of `container_path`.
pub async fn copy_from_container(
    docker: &Docker,
    container: &str,
    container_path: &str,
    host_dir: &Path,
) -> Result<(), DockerError> {
    let options = DownloadFromContainerOptions {
        path: container_path.to_owned(),
    };
    let chunks: Vec<bytes::Bytes> = docker
        .download_from_container(container, Some(options))
        .try_collect()
        .await
        .map_err(DockerError::api(format!(
            "copying {container}:{container_path} out"
        )))?;
    let host = host_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let data: Vec<u8> = chunks.concat();
        let mut archive = tar::Archive::new(data.as_slice());
        archive.set_preserve_permissions(true);
        archive.unpack(&host).map_err(|source| DockerError::Io {
            context: format!("unpacking into {}", host.display()),
            source,
        })
    })
    .await
    .map_err(|e| DockerError::Io {
        context: format!("unpacking into {}", host_dir.display()),
        source: std::io::Error::other(e.to_string()),
    })?
}
