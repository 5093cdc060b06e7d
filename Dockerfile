# vcsa-backup: worker, scheduler, dashboard and the other commands, in one image.
#   docker build -t vcsa-backup .
#   docker run --rm -v $PWD/fleet.yaml:/etc/vcsa-backup/fleet.yaml:ro vcsa-backup status
# The TypeScript sources run through tsx (a runtime dependency): there is no build step.

# Production dependencies only; no install scripts (none is needed: ssh2's optional native
# addon and esbuild's binary check are skipped).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM node:24-bookworm-slim
# PostgreSQL 15 client tools for `verify` and restore drills (scratch restores with psql and
# pg_restore); tini reaps the dump and restore processes a worker starts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/spool/vcsa-backup /etc/vcsa-backup \
 && chown node:node /var/spool/vcsa-backup
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY workers ./workers
COPY src ./src
RUN ln -s /app/bin/vcsa-backup.js /usr/local/bin/vcsa-backup

ENV NODE_ENV=production \
    VCSA_BACKUP_CONFIG=/etc/vcsa-backup/fleet.yaml
# The image's own user (uid 1000). For the docker executor, give it the Docker socket's group:
# `--group-add $(stat -c %g /var/run/docker.sock)` (compose: group_add).
USER node
VOLUME ["/var/spool/vcsa-backup"]
# A worker is healthy when it can read its config and reach Redis; `status` checks both.
# The dashboard's compose service checks GET /healthz instead.
HEALTHCHECK --interval=60s --timeout=20s --start-period=30s --retries=3 \
  CMD vcsa-backup status --json >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/tini", "--", "vcsa-backup"]
CMD ["worker"]
