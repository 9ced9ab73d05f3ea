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
{{- required "existingSecret is required: the name of a Secret holding DATABASE_URL, LEADSTREAM_WEBHOOK_SECRET and provider keys (see values.yaml)" .Values.existingSecret }}
{{- end }}

{{- define "leadstream.kafkaBootstrapServers" -}}
{{- if .Values.kafka.bootstrapServers }}
{{- .Values.kafka.bootstrapServers }}
{{- else if .Values.strimzi.enabled }}
{{- $ns := default .Release.Namespace .Values.strimzi.namespace }}
{{- printf "%s-kafka-bootstrap.%s.svc:9092" .Values.strimzi.clusterName $ns }}
{{- else }}
{{- required "kafka.bootstrapServers is required (host:port of the Kafka cluster) unless strimzi.enabled" .Values.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{/*
The shared, non-secret environment as a name -> value map (YAML). The ConfigMap carries it for the services;
the hook Jobs get it inline, because they run before (pre-install) the ConfigMap exists.
*/}}
{{- define "leadstream.sharedEnv" -}}
{{- $env := dict
  "KAFKA_BOOTSTRAP_SERVERS" (include "leadstream.kafkaBootstrapServers" .)
  "LEADSTREAM_TOPIC_PREFIX" .Values.kafka.topicPrefix
  "LEADSTREAM_TOPIC_PARTITIONS" (toString .Values.topics.partitions)
  "LEADSTREAM_TOPIC_REPLICATION_FACTOR" (toString .Values.topics.replicationFactor)
  "LEADSTREAM_HTTP_HOST" "0.0.0.0"
  "LEADSTREAM_HTTP_PORT" (toString .Values.http.port)
}}
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
