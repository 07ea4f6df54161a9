{{/*
Deployment, Service and PodDisruptionBudget of one of the four Python services. Call with
  (dict "root" $ "component" "api" "values" .Values.api
        "configChecksum" <sha> "secretChecksum" <sha or "">
        "env" <list of extra env entries as YAML, e.g. secret refs>
        "volumes" / "volumeMounts" <lists of extra ones as YAML, e.g. the Kafka CA>
        "strategy" <Deployment strategy type; default RollingUpdate>)
The service's settings come from its ConfigMap <fullname>-<component> (envFrom).
The operator's hooks (extraEnv, extraEnvFrom, extraVolumes, extraVolumeMounts, initContainers,
extraContainers, service annotations, scheduling, grace period and preStop) are rendered by the
gostream.pod.* templates below, which QuestDB's StatefulSet uses too.
*/}}
{{- define "gostream.workload" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $name := include "gostream.componentName" (dict "root" $root "component" .component) }}
{{- $ctx := dict "root" $root "component" .component }}
{{- $hooks := dict "root" $root "component" .component "values" $v }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "gostream.componentLabels" $ctx | nindent 4 }}
spec:
  replicas: {{ $v.replicaCount }}
  revisionHistoryLimit: 5
  strategy:
    type: {{ .strategy | default "RollingUpdate" }}
  selector:
    matchLabels:
      {{- include "gostream.componentSelectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "gostream.componentLabels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ .configChecksum }}
        {{- with .secretChecksum }}
        checksum/secret: {{ . }}
        {{- end }}
        {{- with include "gostream.scrapeAnnotations" (dict "root" $root "port" $v.port "path" "/metrics") }}
        {{- . | trim | nindent 8 }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "gostream.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with include "gostream.imagePullSecrets" $root }}
      {{- . | trim | nindent 6 }}
      {{- end }}
      securityContext:
        {{- include "gostream.podSecurityContext" $root | nindent 8 }}
      {{- include "gostream.pod.scheduling" $hooks | nindent 6 }}
      {{- with include "gostream.pod.initContainers" $hooks }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "gostream.image" (dict "root" $root "image" $v.image) | quote }}
          imagePullPolicy: {{ include "gostream.imagePullPolicy" (dict "root" $root "image" $v.image) }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ $name }}
            {{- with $v.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            # What is left of the grace period for the service's own shutdown (see values.yaml).
            - name: SHUTDOWN_TIMEOUT_S
              value: {{ include "gostream.pod.drainSeconds" $hooks | quote }}
            {{- with .env }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with include "gostream.pod.lifecycle" $hooks }}
          {{- . | nindent 10 }}
          {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
            timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "gostream.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
        {{- with $v.extraContainers }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with .volumes }}
        {{- . | trim | nindent 8 }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "gostream.componentLabels" $ctx | nindent 4 }}
  {{- with ($v.service | default dict).annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ ($v.service | default dict).type | default "ClusterIP" }}
  selector:
    {{- include "gostream.componentSelectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.port }}
      targetPort: http
      protocol: TCP
{{- if and $root.Values.podDisruptionBudget.enabled (gt (int $v.replicaCount) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "gostream.componentLabels" $ctx | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "gostream.componentSelectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- end }}

{{/*
The pod hooks every workload shares (the four services and QuestDB). Each takes
  (dict "root" $ "component" "api" "values" .Values.api)
*/}}

{{/*
Seconds the process has for its own shutdown: the grace period minus the preStop sleep and a
2 s margin for the kubelet's SIGKILL. A grace period leaving less than 3 s is refused.
*/}}
{{- define "gostream.pod.drainSeconds" -}}
{{- $drain := sub (sub (int .values.terminationGracePeriodSeconds) (int .values.preStopSleepSeconds)) 2 }}
{{- if lt $drain 3 }}
{{- fail (printf "%s: terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) by at least 5 s: the service needs time to drain after the preStop sleep" .component (int .values.terminationGracePeriodSeconds) (int .values.preStopSleepSeconds)) }}
{{- end }}
{{- $drain }}
{{- end }}

{{/*
Pod-level: grace period, priority class, spreading and placement. A topology spread constraint
without labelSelector gets the component's own selector labels (what one means by "spread
these pods").
*/}}
{{- define "gostream.pod.scheduling" -}}
{{- $ctx := dict "root" .root "component" .component }}
{{- $_ := include "gostream.pod.drainSeconds" . }}
terminationGracePeriodSeconds: {{ int .values.terminationGracePeriodSeconds }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "gostream.componentSelectorLabels" $ctx | fromYaml)) }}
{{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod-level: the operator's init containers (native sidecars too, with restartPolicy: Always).
*/}}
{{- define "gostream.pod.initContainers" -}}
{{- with .values.initContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Container-level: the preStop sleep (the kubelet's own sleep action: no shell in the image).
*/}}
{{- define "gostream.pod.lifecycle" -}}
{{- if gt (int .values.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ int .values.preStopSleepSeconds }}
{{- end }}
{{- end }}
