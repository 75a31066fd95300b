#!/bin/sh
# The local stack's one-shot certificate step (the `certs` service in docker-compose.yml). Runs
# as root in the image's `tools` stage (busybox shell), writes into the shared `certs` volume:
#
#   gateway/    tls.crt tls.key (serving, for "gateway"), ca.crt, client-ca.crt   owner 65532
#   dex/        tls.crt tls.key (serving, for "dex" and localhost), ca.crt        owner 1001
#   apiserver/  webhook.kubeconfig: the gateway's CA, the apiserver's client      owner root
#               certificate and key, embedded (kube-apiserver's webhook config)
#
# CA private keys are deleted once the certificates are issued, and the apiserver's client key
# lives only in its kubeconfig. Runs once: delete the volume (docker compose down -v) for new ones.
set -eu

out="${CERTS_DIR:-/certs}"
bin="${GATEWAY_BIN:-/usr/local/bin/tokenreview-gateway}"

if [ -f "$out/apiserver/webhook.kubeconfig" ]; then
  echo "certificates already in $out; docker compose down -v makes new ones"
  exit 0
fi

"$bin" certs --out "$out/gateway" --hosts gateway,localhost,127.0.0.1 --client-name kube-apiserver --days 30
"$bin" certs --out "$out/dex" --hosts dex,localhost,127.0.0.1 --client-name unused --days 30

chmod 755 "$out"   # the gateway (65532) and Dex (1001) must reach their folders
mkdir -p "$out/apiserver"
chmod 700 "$out/apiserver"
"$bin" kubeconfig --server https://gateway:8443/authenticate --ca "$out/gateway/ca.crt" \
  --client-cert "$out/gateway/apiserver.crt" --client-key "$out/gateway/apiserver.key" \
  >"$out/apiserver/webhook.kubeconfig.tmp"
chmod 600 "$out/apiserver/webhook.kubeconfig.tmp"
mv "$out/apiserver/webhook.kubeconfig.tmp" "$out/apiserver/webhook.kubeconfig"

rm -f "$out/gateway/ca.key" "$out/gateway/client-ca.key" "$out/gateway/apiserver.crt" "$out/gateway/apiserver.key"
rm -f "$out/dex/ca.key" "$out/dex/client-ca.crt" "$out/dex/client-ca.key" "$out/dex/apiserver.crt" "$out/dex/apiserver.key"

# The gateway image runs as 65532 (distroless nonroot), Dex as 1001 (docker-compose.yml sets both).
# (Not root: .ci/ship-checks running this script elsewhere; the files stay the caller's.)
if [ "$(id -u)" = 0 ]; then
  chown -R 65532:65532 "$out/gateway"
  chown -R 1001:1001 "$out/dex"
fi
echo "certificates written to $out"
