#!/bin/sh
# One-shot (admin-tools image): the `default` namespace and Bridgehead's search attributes. Fails
# (and compose retries it) until every one exists; nothing is masked.
set -eu
ns="${NAMESPACE:-default}"
temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$ns" --retention 72h
for attr in OrgId ClusterName ClusterStatus Region; do
  temporal operator search-attribute list --namespace "$ns" | grep -q "$attr" \
    || temporal operator search-attribute create --namespace "$ns" --name "$attr" --type Keyword
done
for attr in OrgId ClusterName ClusterStatus Region; do
  temporal operator search-attribute list --namespace "$ns" | grep -q "$attr"
done
echo "namespace $ns ready with Bridgehead's search attributes"
