# The image CI builds: FROM scratch with static binaries made on the host by
# docker/build-dist.sh, so it builds where no image can be pulled.
# On a machine with registry access, docker/Dockerfile.rust builds the same
# image from source in a Rust builder image instead.
#
#   docker/build-dist.sh && docker build -t shmconf .
#   docker run --rm shmconf                      # the whole suite, in the container's own IPC namespace
#   docker run --rm --cap-add SYS_ADMIN shmconf  # also the multi-namespace and sysctl scenarios
FROM scratch

LABEL org.opencontainers.image.title="shmconf" \
      org.opencontainers.image.description="Conformance harness for System V shared-memory IPC: scenarios, writer/reader implementations, raw-syscall probes" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      io.shmconf.role="suite"

# /tmp for the scenarios' temp dirs (scratch has no filesystem at all).
COPY docker/rootfs/ /
COPY docker/dist/shmconf docker/dist/shm-writer docker/dist/shm-reader docker/dist/c-writer docker/dist/c-reader /usr/local/bin/
COPY scenarios/ /scenarios/

# /tmp (scenario dirs) as an anonymous volume: on the host's filesystem
# rather than overlayfs, where creating files is ~20x slower and
# keys/inode-collision (65536 files until two inodes agree modulo 65536)
# took 18-30 s of a 20-31 s run. `docker run --rm` removes the volume with
# the container.
VOLUME /tmp

ENV SHMCONF_SCENARIOS=/scenarios \
    TMPDIR=/tmp \
    PATH=/usr/local/bin

ENTRYPOINT ["/usr/local/bin/shmconf"]
CMD ["run"]
