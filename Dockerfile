# syntax=docker/dockerfile:1
# MCP Auth Relay: runs src/main.ts with Node's type stripping (no build step).
#   docker build -t mcp-auth-relay .
#   docker run -p 8787:8787 -e PUBLIC_BASE_URL=https://relay.example.com -v relay-data:/app/data mcp-auth-relay

# Stage 1: type-check the sources with the full dependency tree (typescript and the type packages
# are devDependencies). The final stage takes its sources from here, so an image is only built
# from sources that type-check.
FROM node:24-slim AS check
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc --noEmit -p .

# Stage 2: production dependencies only, a non-root user, and nothing else.
FROM node:24-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8787
WORKDIR /app
# .npmrc sets ignore-scripts=true: no install script runs, and none is needed (every production
# dependency is plain JavaScript; SQLite is Node's own node:sqlite).
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=check /app/src ./src
# The default store is sqlite://./data/relay.sqlite, its key file beside it: both live in the volume.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME /app/data
EXPOSE 8787
# node:24-slim has no curl: the probe is Node's own fetch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8787)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# main.ts stops on SIGTERM: it stops accepting, lets requests in flight finish (at most 10 s),
# closes the upstream sessions and the store. Give `docker stop` more than that (-t 15).
STOPSIGNAL SIGTERM
CMD ["node", "--experimental-strip-types", "--disable-warning=ExperimentalWarning", "--max-semi-space-size=8", "src/main.ts"]
