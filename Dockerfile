# The oxrunner runner image, laid out like gitlab/gitlab-runner: config in /etc/gitlab-runner, the `gitlab-runner`
# user with its home as working directory, `run` as the default command, SIGQUIT as the stop signal (running jobs
# finish before the container stops; give `docker stop -t` enough time).
#
#   docker build -t oxrunner:latest --build-arg REVISION=$(git rev-parse --short=8 HEAD) .
#   docker run -d --name oxrunner --restart always -v /srv/gitlab-runner/config:/etc/gitlab-runner \
#       -v /var/run/docker.sock:/var/run/docker.sock oxrunner:latest
#
# Arguments replace the default command, as with gitlab-runner's image (`... oxrunner:latest register -n ...`).

FROM rust:1.95-slim-bookworm AS build
# .dockerignore leaves .git out, so `oxrunner -v` would say "unknown": pass the revision in,
#   docker build --build-arg REVISION=$(git rev-parse --short=8 HEAD) --build-arg BRANCH=$(git branch --show-current) .
ARG REVISION=unknown
ARG BRANCH=unknown
WORKDIR /src
COPY . .
RUN OXRUNNER_BUILD_REVISION="$REVISION" OXRUNNER_BUILD_BRANCH="$BRANCH" cargo build --release --locked -p oxrunner \
 && install -m 0755 target/release/oxrunner /oxrunner

FROM debian:bookworm-slim
# git for the shell executor and runner-side fetches, CA certificates for GitLab and registries, dumb-init as PID 1:
# it reaps the orphans jobs leave behind and, with --single-child, hands `docker stop`'s SIGQUIT to the runner
# alone (to the whole process group it would also kill the runner's own git and helper processes mid-drain).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bash ca-certificates dumb-init git git-lfs procps tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --comment 'GitLab Runner' --create-home --home-dir /home/gitlab-runner --shell /bin/bash gitlab-runner \
 && mkdir -p /etc/gitlab-runner \
 && chmod 0700 /etc/gitlab-runner
COPY --from=build /oxrunner /usr/bin/oxrunner
# Scripts and documentation written for gitlab-runner's image call it by that name.
RUN ln -s oxrunner /usr/bin/gitlab-runner
STOPSIGNAL SIGQUIT
VOLUME ["/etc/gitlab-runner", "/home/gitlab-runner"]
ENTRYPOINT ["/usr/bin/dumb-init", "--single-child", "/usr/bin/oxrunner"]
CMD ["run", "--user=gitlab-runner", "--working-directory=/home/gitlab-runner"]
