# Colibri on Bun, from Oven's official Bun image (docker.io/oven/bun).
#
#   docker build -t colibri .
#   docker run -p 1883:1883 -p 9100:9100 colibri            # add options after the image name
#
# deploy/compose.yaml runs three of these on one Redis behind HAProxy. Neither is built on the
# machine Colibri is developed on (it has no Docker engine): test/e2e/compose.test.ts checks
# this file and the compose file against scripts/cluster-up.sh instead.
FROM oven/bun:1-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# runtime dependencies only (ioredis, mqtt-packet): bun, deno and the test tools are dev tools
RUN bun install --production --ignore-scripts

FROM oven/bun:1-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY adapters ./adapters
USER bun
# MQTT, and the HTTP endpoint (/metrics, /healthz, /readyz, POST /drain)
EXPOSE 1883 9100
# SIGTERM stops: clients told 0x8B, sessions flushed to Redis, exit within --shutdown-timeout-ms
# (10 s by default: give the container at least that, e.g. compose stop_grace_period: 15s).
# SIGUSR2 drains (docker kill -s SIGUSR2 <container>).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["bun", "-e", "fetch('http://127.0.0.1:9100/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["bun", "run", "src/main.ts"]
CMD ["--host", "0.0.0.0", "--http-port", "9100"]
