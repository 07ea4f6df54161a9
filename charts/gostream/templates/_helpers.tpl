{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "gostream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: <release>-<chart>, or the release name when it already contains the
chart name. Kept to 40 characters so "<fullname>-questdb-headless" and Strimzi's derived names
stay within the 63-character limit.
*/}}
{{- define "gostream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "gostream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "gostream.labels" -}}
helm.sh/chart: {{ include "gostream.chart" . }}
{{ include "gostream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gostream
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels shared by every pod of the release.
*/}}
{{- define "gostream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gostream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component. Call with (dict "root" $ "component" "api").
*/}}
{{- define "gostream.componentLabels" -}}
{{ include "gostream.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "root" $ "component" "api").
*/}}
{{- define "gostream.componentSelectorLabels" -}}
{{ include "gostream.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of one component's resources. Call with (dict "root" $ "component" "api").
*/}}
{{- define "gostream.componentName" -}}
{{- printf "%s-%s" (include "gostream.fullname" .root) .component }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "gostream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gostream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference. Call with (dict "root" $ "image" .Values.api.image): the image's own registry,
else global.imageRegistry; pulled by digest when one is given (the tag is then left out, so
the reference cannot say one version and pull another), else by tag (default: appVersion).
*/}}
{{- define "gostream.image" -}}
{{- $registry := .image.registry | default .root.Values.global.imageRegistry | default "" }}
{{- $repository := .image.repository }}
{{- if $registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) .image.repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Pull policy of an image: its own, else global.imagePullPolicy. Same call as gostream.image.
*/}}
{{- define "gostream.imagePullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.global.imagePullPolicy }}
{{- end }}

{{/*
imagePullSecrets of a pod spec.
*/}}
{{- define "gostream.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Prometheus scrape annotations. Call with (dict "root" $ "port" 9101 "path" "/metrics").
*/}}
{{- define "gostream.scrapeAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | default "/metrics" | quote }}
{{- end }}
{{- end }}

{{/*
Name of the Strimzi Kafka cluster.
*/}}
{{- define "gostream.kafka.clusterName" -}}
{{- default (include "gostream.fullname" .) .Values.kafka.strimzi.clusterName | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
Bootstrap servers the producer and consumer use.
*/}}
{{- define "gostream.kafka.bootstrapServers" -}}
{{- if .Values.kafka.strimzi.enabled }}
{{- printf "%s-kafka-bootstrap:%s" (include "gostream.kafka.clusterName" .) (include "gostream.kafka.port" .) }}
{{- else if .Values.kafka.externalBootstrapServers }}
{{- .Values.kafka.externalBootstrapServers }}
{{- else }}
{{- fail "kafka.externalBootstrapServers must be set when kafka.strimzi.enabled is false" }}
{{- end }}
{{- end }}

{{/*
Replication factor for internal and pipeline topics: min(3, brokers).
*/}}
{{- define "gostream.kafka.replicationFactor" -}}
{{- min 3 (int .Values.kafka.strimzi.nodePool.replicas) }}
{{- end }}

{{/*
Replicas of a topic. Call with (dict "root" $ "topic" .Values.kafka.topics.trades).
*/}}
{{- define "gostream.kafka.topicReplicas" -}}
{{- if gt (int .topic.replicas) 0 }}
{{- int .topic.replicas }}
{{- else }}
{{- include "gostream.kafka.replicationFactor" .root }}
{{- end }}
{{- end }}

{{/*
QuestDB names and the Secret holding its passwords.
*/}}
{{- define "gostream.questdb.name" -}}
{{- include "gostream.componentName" (dict "root" . "component" "questdb") }}
{{- end }}

{{- define "gostream.questdb.secretName" -}}
{{- default (include "gostream.questdb.name" .) .Values.questdb.auth.existingSecret }}
{{- end }}

{{/*
A password kept across upgrades: the value given, else the one already in the Secret, else a
new random one. Call with (dict "root" $ "value" "..." "key" "admin-password").
*/}}
{{- define "gostream.questdb.password" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "gostream.questdb.name" .root) }}
{{- if and $existing (hasKey (default dict $existing.data) .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The QuestDB passwords, resolved once per render so the Secret and the checksum annotations
agree. Returns YAML: {admin: ..., readonly: ...}.
*/}}
{{- define "gostream.questdb.credentials" -}}
{{- $auth := .Values.questdb.auth }}
{{- if not (hasKey $auth "resolved") }}
{{- $admin := include "gostream.questdb.password" (dict "root" . "value" $auth.adminPassword "key" "admin-password") }}
{{- $readonly := include "gostream.questdb.password" (dict "root" . "value" $auth.readonlyPassword "key" "readonly-password") }}
{{- $_ := set $auth "resolved" (dict "admin" $admin "readonly" $readonly) }}
{{- end }}
{{- toYaml $auth.resolved }}
{{- end }}

{{/*
Checksum annotation value for pods that read the QuestDB Secret.
*/}}
{{- define "gostream.questdb.secretChecksum" -}}
{{- if .Values.questdb.auth.existingSecret }}
{{- .Values.questdb.auth.existingSecret | sha256sum }}
{{- else }}
{{- include "gostream.questdb.credentials" . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Restricted security contexts.
*/}}
{{- define "gostream.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "gostream.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
NetworkPolicy peer for the pods of one component. Call with (dict "root" $ "component" "api").
*/}}
{{- define "gostream.peer" -}}
- podSelector:
    matchLabels:
      {{- include "gostream.componentSelectorLabels" . | nindent 6 }}
{{- end }}

{{/*
NetworkPolicy egress rule for DNS.
*/}}
{{- define "gostream.dnsEgress" -}}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
  {{- with .Values.networkPolicy.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
NetworkPolicy ingress rule admitting Prometheus to a metrics port. Call with (dict "root" $ "port" 9101).
*/}}
{{- define "gostream.metricsIngress" -}}
- ports:
    - protocol: TCP
      port: {{ .port }}
  {{- with .root.Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
NetworkPolicy egress rule to the Kafka brokers.
*/}}
{{- define "gostream.kafkaEgress" -}}
{{- if .Values.kafka.strimzi.enabled -}}
- to:
    - podSelector:
        matchLabels:
          strimzi.io/cluster: {{ include "gostream.kafka.clusterName" . }}
          strimzi.io/kind: Kafka
  ports:
    - protocol: TCP
      port: {{ include "gostream.kafka.port" . }}
{{- else -}}
- ports:
  {{- range .Values.kafka.externalPorts }}
    - protocol: TCP
      port: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* How the kubelet probes QuestDB (startup, liveness, readiness). */}}
{{- define "gostream.questdb.probeAction" -}}
{{- if .Values.questdb.auth.httpBasicAuth }}
{{- /* With http.user set, QuestDB asks for the credentials on its health port too (9.3.4:
http.health.check.authentication.required=false does not lift it), and a probe cannot take
them from a Secret: the port accepting connections is the signal then. */ -}}
tcpSocket:
  port: metrics
{{- else -}}
httpGet:
  path: /status
  port: metrics
{{- end }}
{{- end }}
