# espf in a container: `espf run` against the PostgreSQL named by DATABASE_URL.
#
#   docker build -t espf .
#   docker run --rm -e DATABASE_URL=postgres://espf_run:…@db.example.net/billing -p 9187:9187 espf
#
# or, with the PostgreSQL of docker-compose.yml: docker compose up espf
#
# Two stages: the first compiles src/ to dist/ with the development
# dependencies (TypeScript); the image keeps only the production dependencies
# (no compiler, no embedded-postgres: the container always has DATABASE_URL),
# dist/, migrations/ and sql/.

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=optional
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-slim
WORKDIR /app

ENV NODE_ENV=production \
    ESPF_HTTP_HOST=0.0.0.0 \
    ESPF_HTTP_PORT=9187 \
    ESPF_LOG_DIR=/app/log \
    ESPF_LOG_FORMAT=json

# Dependencies first, so that a change to the sources reuses this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY sql ./sql

# provisioning.log goes to /app/log (mount a volume there to keep it).
RUN mkdir -p /app/log && chown node:node /app/log
USER node

EXPOSE 9187
# /healthz answers 200 while the instance streams its replication slot, else 503.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.ESPF_HTTP_PORT || 9187) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM (docker stop) is a graceful stop: requests in flight finish, the rest is
# recorded as waiting, exit 0. Give it time: docker stop --time / stop_grace_period.
# bin/espf.js is started by its first line, with the heap limits it names (docs/operations.md, "Memory").
CMD ["bin/espf.js", "run"]
