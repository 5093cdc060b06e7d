# Redis from Debian's redis-server package (bookworm: Redis 7.0): the stand-in for the public
# redis image in docker-compose.local.yml, for machines that cannot pull images. Built on the
# same debian:bookworm-slim as the appliance image (test/support/images.ts makes it locally
# when no registry is reachable), with --network host for apt.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && mkdir -p /data \
 && chown redis:redis /data
WORKDIR /data
USER redis
VOLUME ["/data"]
HEALTHCHECK --interval=5s --timeout=3s --retries=20 CMD ["redis-cli", "ping"]
CMD ["redis-server", "--protected-mode", "yes"]
