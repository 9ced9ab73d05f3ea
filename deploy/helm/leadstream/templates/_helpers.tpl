{{/* Names */}}
{{- define "leadstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leadstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one service's objects: <fullname>-<service>; the fullname is cut so the suffix always survives. */}}
{{- define "leadstream.componentName" -}}
{{- $root := .root }}
{{- printf "%s-%s" (include "leadstream.fullname" $root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{- define "leadstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels */}}
{{- define "leadstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leadstream.labels" -}}
helm.sh/chart: {{ include "leadstream.chart" . }}
{{ include "leadstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leadstream
{{- end }}

{{/* Selector labels of one component (a service or a hook Job). Call with (dict "root" $ "component" "name"). */}}
{{- define "leadstream.componentSelectorLabels" -}}
{{ include "leadstream.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "leadstream.componentLabels" -}}
{{ include "leadstream.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image reference: by digest when one is given, else by tag (default: appVersion). */}}
{{- define "leadstream.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "leadstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "leadstream.configMapName" -}}
{{- printf "%s-config" (include "leadstream.fullname" .) }}
{{- end }}

{{/* The Secret every pod reads its credentials from; rendering fails without one. */}}
{{- define "leadstream.secretName" -}}
{{- required "existingSecret is required: the name of a Secret holding DATABASE_URL, the keys per purpose and provider keys (see values.yaml)" .Values.existingSecret }}
{{- end }}

{{- define "leadstream.kafkaBootstrapServers" -}}
{{- if .Values.kafka.bootstrapServers }}
{{- .Values.kafka.bootstrapServers }}
{{- else if .Values.strimzi.enabled }}
{{- printf "%s-kafka-bootstrap.%s.svc:%s" .Values.strimzi.clusterName (include "leadstream.strimziClusterNamespace" .) (ternary "9093" "9092" .Values.kafka.tls.enabled) }}
{{- else }}
{{- required "kafka.bootstrapServers is required (host:port of the Kafka cluster) unless strimzi.enabled" .Values.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{/*
Namespace of the Strimzi Kafka cluster (its bootstrap Service and broker pods): strimzi.clusterNamespace, else
strimzi.namespace (the namespace the Topic and User Operators watch), else the release namespace.
*/}}
{{- define "leadstream.strimziClusterNamespace" -}}
{{- .Values.strimzi.clusterNamespace | default .Values.strimzi.namespace | default .Release.Namespace }}
{{- end }}

{{/*
Ports the pods connect to Kafka on, as a JSON list of integers: networkPolicy.kafka.ports plus the port of every
bootstrap server (a listener on another port, e.g. Strimzi's 9094, must not be cut off by the NetworkPolicy).
*/}}
{{- define "leadstream.kafkaPorts" -}}
{{- $ports := list }}
{{- range .Values.networkPolicy.kafka.ports }}
{{- $ports = append $ports (int .) }}
{{- end }}
{{- range $server := splitList "," (include "leadstream.kafkaBootstrapServers" .) }}
{{- $port := regexFind "[0-9]+$" (trim $server) }}
{{- if and $port (not (has (int $port) $ports)) }}
{{- $ports = append $ports (int $port) }}
{{- end }}
{{- end }}
{{- toJson $ports }}
{{- end }}

{{/*
The egress rules a NetworkPolicy of the chart starts from: DNS, then those of `reach` ("kafka", "postgres",
"otelCollector"; always in that order) from networkPolicy.*. Kafka's peer defaults, with Strimzi, to the cluster's
broker pods in strimzi.clusterNamespace; its ports are leadstream.kafkaPorts. The services' policies and the Jobs'
(migrate, topics, replay) are built from it alike. Call with (dict "root" $ "reach" (list ...)).
*/}}
{{- define "leadstream.networkPolicyEgress" -}}
{{- $root := .root }}
{{- $np := $root.Values.networkPolicy }}
{{- $kafkaTo := $np.kafka.to }}
{{- if and (not $kafkaTo) $root.Values.strimzi.enabled }}
{{- $kafkaNs := include "leadstream.strimziClusterNamespace" $root }}
{{- $kafkaTo = list (dict
  "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $kafkaNs))
  "podSelector" (dict "matchLabels" (dict "strimzi.io/cluster" $root.Values.strimzi.clusterName "strimzi.io/kind" "Kafka"))) }}
{{- end }}
{{- $targets := dict
  "kafka" (dict "to" $kafkaTo "ports" (include "leadstream.kafkaPorts" $root | fromJsonArray))
  "postgres" $np.postgres
  "otelCollector" $np.otelCollector }}
- to:
    {{- toYaml $np.dns.to | nindent 4 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- range $name := list "kafka" "postgres" "otelCollector" }}
{{- if has $name $.reach }}
{{- $target := get $targets $name }}
- {{- with $target.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range $target.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints of one component's pods: a constraint without a labelSelector counts that component's
pods (a constraint without one selects no pod and spreads nothing). Call with (dict "root" $ "component" n
"constraints" list).
*/}}
{{- define "leadstream.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "leadstream.componentSelectorLabels" (dict "root" $.root "component" $.component) | fromYaml)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The shared, non-secret environment as a name -> value map (YAML). The ConfigMap carries it for the services;
the hook Jobs get it inline, because they run before (pre-install) the ConfigMap exists.
*/}}
{{- define "leadstream.sharedEnv" -}}
{{- if eq (int .Values.http.port) (int .Values.metrics.port) }}
{{- fail (printf "metrics.port=%d is http.port: /metrics needs a listener of its own (never the API's, which the Ingress routes)" (int .Values.metrics.port)) }}
{{- end }}
{{- $env := dict
  "KAFKA_BOOTSTRAP_SERVERS" (include "leadstream.kafkaBootstrapServers" .)
  "LEADSTREAM_TOPIC_PREFIX" .Values.kafka.topicPrefix
  "LEADSTREAM_TOPIC_PARTITIONS" (toString .Values.topics.partitions)
  "LEADSTREAM_TOPIC_REPLICATION_FACTOR" (toString .Values.topics.replicationFactor)
  "LEADSTREAM_TOPIC_MIN_INSYNC_REPLICAS" (include "leadstream.minInsyncReplicas" .)
  "LEADSTREAM_HTTP_HOST" "0.0.0.0"
  "LEADSTREAM_HTTP_PORT" (toString .Values.http.port)
  "LEADSTREAM_MIGRATE_ON_START" (toString .Values.migrations.migrateOnStart)
  "LEADSTREAM_KAFKA_SECURITY_PROTOCOL" (include "leadstream.kafkaSecurityProtocol" .)
  "LEADSTREAM_ENV" .Values.environment
  "LEADSTREAM_METRICS_HOST" "0.0.0.0"
  "LEADSTREAM_METRICS_PORT" (toString .Values.metrics.port)
}}
{{- with .Values.http.forwardedAllowIps }}
{{- $_ := set $env "LEADSTREAM_FORWARDED_ALLOW_IPS" . }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
{{- $_ := set $env "LEADSTREAM_KAFKA_SSL_CAFILE" (printf "/etc/leadstream/kafka-ca/%s" .Values.kafka.tls.caKey) }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
{{- $_ := set $env "LEADSTREAM_KAFKA_SASL_MECHANISM" .Values.kafka.sasl.mechanism }}
{{- if not .Values.strimzi.kafkaUsers.enabled }}
{{- $_ := set $env "LEADSTREAM_KAFKA_SASL_USERNAME" (required "kafka.sasl.username is required with kafka.sasl.enabled (or use strimzi.kafkaUsers)" .Values.kafka.sasl.username) }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.config }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* One service's effective settings: `defaults` overridden by services.<name>. Call with (dict "root" $ "name" n). */}}
{{- define "leadstream.serviceValues" -}}
{{- $svc := index .root.Values.services .name | default dict }}
{{- $merged := mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $svc) }}
{{- /* mergeOverwrite treats 0 as "unset"; an explicit replicas: 0 must still scale the service to zero. */}}
{{- if hasKey $svc "replicas" }}
{{- $_ := set $merged "replicas" $svc.replicas }}
{{- end }}
{{- toYaml $merged }}
{{- end }}

{{/*
The names of the enabled services (services.<name> with `enabled` after `defaults`), sorted, as a JSON list. Every
per-service object iterates this one list (Deployments and Services, NetworkPolicies and their callers, PDBs,
autoscalers, KafkaUsers, the Ingress's hosts, LeadstreamDown's selector, NOTES), so disabling or adding a service
changes all of them alike. Use: range $name := include "leadstream.enabledServices" . | fromJsonArray.
*/}}
{{- define "leadstream.enabledServices" -}}
{{- $names := list }}
{{- range $name, $_ := .Values.services }}
{{- if (include "leadstream.serviceValues" (dict "root" $ "name" $name) | fromYaml).enabled }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/*
The services one service calls over HTTP (services.<name>.calls), as a JSON list. Each must be an enabled service
of this release: the caller's URL of it (the console's LEADSTREAM_CONSOLE_<SERVICE>_URL) and its NetworkPolicy rule
point at that service's Kubernetes Service, and the console has no "this part is switched off" state (a backend it
cannot reach is "temporarily unavailable" on every page that reads it, for ever), so a call to a disabled or unknown
service refuses to render, naming both services. Deployments (the URLs) and NetworkPolicies (egress, and the callers
let in) read this one list. Call with (dict "root" $ "name" n).
*/}}
{{- define "leadstream.calls" -}}
{{- $svc := include "leadstream.serviceValues" (dict "root" .root "name" .name) | fromYaml }}
{{- $enabled := include "leadstream.enabledServices" .root | fromJsonArray }}
{{- $calls := $svc.calls | default list }}
{{- range $target := $calls }}
{{- if not (has $target $enabled) }}
{{- if hasKey $.root.Values.services $target }}
{{- fail (printf "services.%s.calls names %s, which is disabled (services.%s.enabled=false): enable %s, or remove it from services.%s.calls to run %s without it (its calls there then fail)" $.name $target $target $target $.name $.name) }}
{{- else }}
{{- fail (printf "services.%s.calls names %s, which is not a service of this chart (no services.%s)" $.name $target $target) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $calls }}
{{- end }}

{{/*
The service whose pods `kubectl exec` runs the operators' commands in (NOTES.txt): an enabled service with pods
(replicas > 0, or autoscaling, whose minReplicas is at least 1), with `kafka` one that uses Kafka (its pods have the
bootstrap address, the listener's security and the CA; the console's have none). `prefer` when it qualifies, else
the first such service by name; empty when none has pods. Call with (dict "root" $ "kafka" bool "prefer" name).
*/}}
{{- define "leadstream.execService" -}}
{{- $found := list }}
{{- range $name := include "leadstream.enabledServices" .root | fromJsonArray }}
{{- $svc := include "leadstream.serviceValues" (dict "root" $.root "name" $name) | fromYaml }}
{{- $running := or $svc.autoscaling.enabled (gt (int $svc.replicas) 0) }}
{{- if and $running (or (not $.kafka) $svc.kafka.consumes $svc.kafka.produces) }}
{{- $found = append $found $name }}
{{- end }}
{{- end }}
{{- if has .prefer $found }}{{ .prefer }}{{ else }}{{ first $found | default "" }}{{ end }}
{{- end }}

{{/* The writable /tmp of every pod (the root filesystem is read-only). */}}
{{- define "leadstream.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "leadstream.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* min.insync.replicas of every topic: topics.minInsyncReplicas, else min(2, replicationFactor). */}}
{{- define "leadstream.minInsyncReplicas" -}}
{{- $rf := int .Values.topics.replicationFactor }}
{{- $min := int .Values.topics.minInsyncReplicas | default (min 2 $rf) }}
{{- if gt (int $min) $rf }}
{{- fail (printf "topics.minInsyncReplicas=%d exceeds topics.replicationFactor=%d: every acks=all write would fail" (int $min) $rf) }}
{{- end }}
{{- $min }}
{{- end }}

{{- define "leadstream.kafkaSecurityProtocol" -}}
{{- $tls := .Values.kafka.tls.enabled }}
{{- if .Values.kafka.sasl.enabled }}{{ ternary "SASL_SSL" "SASL_PLAINTEXT" $tls }}{{ else }}{{ ternary "SSL" "PLAINTEXT" $tls }}{{ end }}
{{- end }}

{{/* Physical topic name. Call with (dict "root" $ "topic" t). */}}
{{- define "leadstream.topic" -}}
{{- printf "%s%s" .root.Values.kafka.topicPrefix .topic }}
{{- end }}

{{/* A service's consumer group (services/runtime/settings.py group_id). Call with (dict "root" $ "name" n). */}}
{{- define "leadstream.consumerGroup" -}}
{{- printf "%sleadstream-%s" .root.Values.kafka.topicPrefix .name }}
{{- end }}

{{/*
The extension points of one pod: `global` with the service's (or hooks') settings on top. Lists concatenate
(global first), maps merge (the service wins), scheduling maps/lists apply when the service sets none.
Call with (dict "root" $ "settings" $svc).
*/}}
{{- define "leadstream.podSettings" -}}
{{- $g := .root.Values.global | default dict }}
{{- $s := .settings }}
{{- $out := dict }}
{{- range $k := list "extraEnv" "extraEnvFrom" "extraVolumes" "extraVolumeMounts" "initContainers" }}
{{- $_ := set $out $k (concat (get $g $k | default list) (get $s $k | default list)) }}
{{- end }}
{{- range $k := list "podAnnotations" "podLabels" }}
{{- $_ := set $out $k (merge (deepCopy (get $s $k | default dict)) (deepCopy (get $g $k | default dict))) }}
{{- end }}
{{- range $k := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" }}
{{- $_ := set $out $k (get $s $k | default (get $g $k)) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Name of a service's KafkaUser (and of the Secret Strimzi writes its password to). */}}
{{- define "leadstream.kafkaUserName" -}}
{{- include "leadstream.componentName" (dict "root" .root "component" .name) }}
{{- end }}

{{/*
Kafka credentials of one pod as EnvVars: the SASL password (and with KafkaUsers, the user name). Call with
(dict "root" $ "name" <service name, or "" for a hook Job>).
*/}}
{{- define "leadstream.kafkaCredentialsEnv" -}}
{{- $root := .root }}
{{- if $root.Values.kafka.sasl.enabled }}
{{- if and $root.Values.strimzi.kafkaUsers.enabled .name }}
{{- $user := include "leadstream.kafkaUserName" (dict "root" $root "name" .name) }}
- name: LEADSTREAM_KAFKA_SASL_USERNAME
  value: {{ $user | quote }}
- name: LEADSTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $user }}
      key: password
{{- else }}
- name: LEADSTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.passwordSecret.name is required with kafka.sasl.enabled (or use strimzi.kafkaUsers)" $root.Values.kafka.sasl.passwordSecret.name }}
      key: {{ $root.Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leadstream.kafkaCaSecret" -}}
{{- if .Values.kafka.tls.caSecret }}{{ .Values.kafka.tls.caSecret }}
{{- else if .Values.strimzi.enabled }}{{ printf "%s-cluster-ca-cert" .Values.strimzi.clusterName }}
{{- else }}{{ required "kafka.tls.caSecret is required with kafka.tls.enabled (a Secret with the CA certificate)" .Values.kafka.tls.caSecret }}
{{- end }}
{{- end }}

{{/* Volumes every pod has: the writable /tmp, and the Kafka CA with TLS. */}}
{{- define "leadstream.baseVolumes" -}}
{{ include "leadstream.tmpVolume" . }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  secret:
    secretName: {{ include "leadstream.kafkaCaSecret" . }}
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: {{ .Values.kafka.tls.caKey }}
{{- end }}
{{- end }}

{{- define "leadstream.baseVolumeMounts" -}}
{{ include "leadstream.tmpVolumeMount" . }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  mountPath: /etc/leadstream/kafka-ca
  readOnly: true
{{- end }}
{{- end }}
