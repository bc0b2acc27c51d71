# The example application, with the repository's migrations compiled in: the image needs no
# migrations directory. Build from the repository root:
#   docker build -f jobs/k8s/app.Dockerfile -t sluice-example-app .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sluice-example-app \
 && cp target/release/sluice-example-app /usr/local/bin/

FROM debian:bookworm-slim
# CA certificates for TLS to the database.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/sluice-example-app /usr/local/bin/
USER 10001:10001
ENTRYPOINT ["sluice-example-app"]
