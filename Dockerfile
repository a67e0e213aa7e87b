# waymark in a container: the release binary on Debian's slim image, for
# pipelines and hosts without Rust.
#
#   docker build -t waymark .
#   docker run --rm -v "$PWD:/work" -e DATABASE_URL=postgres://app@db/app waymark plan
#
# The image runs in /work: mount the folder that holds migrations/ (and
# waymark.toml) there. Compiled steps are cached in /work/.waymark-cache,
# so a mounted folder keeps them between runs.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# `--version` names the commit: from .git when the context has it, else
# from --build-arg WAYMARK_COMMIT=...
ARG WAYMARK_COMMIT=""
ENV WAYMARK_COMMIT=${WAYMARK_COMMIT}
# The built-in SQL step and the test components are WebAssembly, built
# with the binary; the release profile leaves the line tables out.
RUN rustup target add wasm32-wasip2 \
 && cargo build --release --locked -p waymark \
 && install -m 755 target/release/waymark /usr/local/bin/waymark

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/waymark /usr/local/bin/waymark
WORKDIR /work
ENV WAYMARK_CACHE_DIR=/work/.waymark-cache
ENTRYPOINT ["waymark"]
CMD ["--help"]
