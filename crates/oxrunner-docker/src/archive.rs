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

/// Tars the contents of `host_dir` as `container_dir`. Missing parents are left to the engine, which creates them
/// (0755); emitting them here would reset the modes of existing ones such as `/tmp`.
fn tar_dir_into(host_dir: &Path, container_dir: &str, out: &mut std::fs::File) -> Result<(), DockerError> {
    let rel = relative(container_dir)?;
    let io = |source| DockerError::Io {
        context: format!("packing {} for the container", host_dir.display()),
        source,
    };
    let mut builder = tar::Builder::new(std::io::BufWriter::new(out));
    // Symlinks are copied as links: a job's checkout may contain links pointing outside it.
    builder.follow_symlinks(false);
    let top = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel.as_path()
    };
    builder.append_dir_all(top, host_dir).map_err(io)?;
    builder.into_inner().map_err(io)?.flush().map_err(io)
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

fn join_err(context: String, e: tokio::task::JoinError) -> DockerError {
    DockerError::Io {
        context,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Copies the tree under `host_dir` into the container at `container_dir` (created if missing; existing files are
/// overwritten). Works on created and stopped containers; the container's volumes receive the files. The tar is
/// spooled to a temporary file and streamed, so memory stays flat whatever the tree's size.
pub async fn copy_dir_to_container(
    docker: &Docker,
    container: &str,
    host_dir: &Path,
    container_dir: &str,
) -> Result<(), DockerError> {
    let host = host_dir.to_path_buf();
    let dest = container_dir.to_owned();
    let spool = tokio::task::spawn_blocking(move || -> Result<std::fs::File, DockerError> {
        let io = |source| DockerError::Io {
            context: format!("packing {} for the container", host.display()),
            source,
        };
        let mut file = tempfile::tempfile().map_err(io)?;
        tar_dir_into(&host, &dest, &mut file)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(file)
    })
    .await
    .map_err(|e| join_err(format!("packing {}", host_dir.display()), e))??;
    let stream = ReaderStream::new(tokio::fs::File::from_std(spool));
    let options = UploadToContainerOptions {
        path: "/".to_owned(),
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
}

impl ContainerFiles {
    /// Files of `container` (which mounts the build volume).
    pub fn new(docker: Docker, container: String) -> Self {
        Self { docker, container }
    }
}

impl JobFiles for ContainerFiles {
    fn push<'a>(&'a self, host_dir: &'a Path, dir: &'a Path) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let dest = dir.display().to_string();
            copy_dir_to_container(&self.docker, &self.container, host_dir, &dest)
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
