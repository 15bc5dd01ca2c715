# The sample mesh in one image, built with no registry access: FROM scratch,
# holding only the static binaries `make build` puts in bin/ (CGO_ENABLED=0,
# -trimpath, version stamped) and the sample policy. Build it with
# `make image` (or `docker compose build` after `make build`).
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="trustmesh" \
      org.opencontainers.image.description="trustmesh sample mesh: shop (gateway, orders, inventory, payments, traces) and meshctl" \
      org.opencontainers.image.version="${VERSION}"

COPY bin/shop bin/meshctl /usr/local/bin/
COPY services/policy.yaml /etc/shop/policy.yaml

ENV PATH=/usr/local/bin \
    SHOP_CERT_DIR=/certs \
    SHOP_POLICY=/etc/shop/policy.yaml

# A numeric non-root user: scratch has no /etc/passwd to name one.
USER 65532:65532

# No shell in the image: the health check is the shop binary itself, a
# grpc.health.v1 Check over mTLS as the service's own identity. It reads
# SHOP_HEALTHCHECK_ADDR and SHOP_HEALTHCHECK_NAME (compose.yaml sets them).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["shop", "healthcheck"]

CMD ["shop", "help"]
