// Validate custom resources against their projects' own CRD schemas, as compiled from the release CRDs by
// @kubernetes-models: Strimzi's (strimzi-kafka-operator) and the Gateway API's (gateway-api, for the HTTPRoute of
// deploy/k8s/components/gateway-api). Reads a JSON array of objects on stdin; prints one JSON line
// [{"kind", "name", "errors": [...]}] and exits 1 when any object is invalid or of an unknown kind/version.
import * as gatewayApi from "@kubernetes-models/gateway-api";
import * as strimzi from "@kubernetes-models/strimzi-kafka-operator";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const byGroupVersion = {
  "kafka.strimzi.io/v1": strimzi.kafkaStrimziIo.v1,
  "gateway.networking.k8s.io/v1": gatewayApi.gatewayNetworkingK8sIo.v1,
};
const results = objects.map((obj) => {
  const name = obj?.metadata?.name ?? "?";
  const models = byGroupVersion[obj.apiVersion];
  const Model = models?.[obj.kind];
  if (!Model) return { kind: obj.kind, name, errors: [`no Strimzi schema for ${obj.apiVersion} ${obj.kind}`] };
  try {
    new Model(obj).validate();
    return { kind: obj.kind, name, errors: [] };
  } catch (err) {
    const details = err.errors ?? [err];
    return { kind: obj.kind, name, errors: details.map((e) => `${e.instancePath ?? ""} ${e.message}`.trim()) };
  }
});
console.log(JSON.stringify(results));
process.exit(results.some((r) => r.errors.length) ? 1 : 0);
