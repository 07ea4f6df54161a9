{{/*
How the producer and consumer reach Kafka securely. With Strimzi and
kafka.strimzi.security.enabled: SASL_SSL on the listener 9093, as the component's KafkaUser
(SCRAM-SHA-512, password from the Secret the User Operator writes), the cluster CA from
<cluster>-cluster-ca-cert. With an external Kafka: kafka.externalSecurity. The services read
these as KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CAFILE (common/settings.py).
Each helper takes (dict "root" $ "component" "producer").
*/}}

{{- define "gostream.kafka.secure" -}}
{{- if and .Values.kafka.strimzi.enabled .Values.kafka.strimzi.security.enabled }}true{{ end }}
{{- end }}

{{/* The client port of the Strimzi brokers. */}}
{{- define "gostream.kafka.port" -}}
{{- if include "gostream.kafka.secure" . }}9093{{ else }}9092{{ end }}
{{- end }}

{{- define "gostream.kafka.caDir" -}}/etc/gostream/kafka-ca{{- end }}

{{/* Whether the component's pod mounts a CA file. */}}
{{- define "gostream.kafka.hasCa" -}}
{{- $x := .root.Values.kafka.externalSecurity }}
{{- if include "gostream.kafka.secure" .root }}true
{{- else if and (not .root.Values.kafka.strimzi.enabled) (or $x.caSecret $x.caConfigMap) }}true
{{- end }}
{{- end }}

{{/* Settings for the component's ConfigMap (YAML). */}}
{{- define "gostream.kafka.securityConfig" -}}
{{- $root := .root }}
{{- $x := $root.Values.kafka.externalSecurity }}
{{- if include "gostream.kafka.secure" $root }}
KAFKA_SECURITY_PROTOCOL: SASL_SSL
KAFKA_SASL_MECHANISM: SCRAM-SHA-512
KAFKA_SASL_USERNAME: {{ include "gostream.componentName" . }}
KAFKA_SSL_CAFILE: {{ include "gostream.kafka.caDir" . }}/ca.crt
{{- else if $root.Values.kafka.strimzi.enabled }}
KAFKA_SECURITY_PROTOCOL: PLAINTEXT
{{- else }}
{{- if and (hasPrefix "SASL_" $x.protocol) (not $x.credentialsSecret) }}
{{- fail (printf "kafka.externalSecurity.protocol %s needs kafka.externalSecurity.credentialsSecret (a Secret with the username and password)" $x.protocol) }}
{{- end }}
{{- if and $x.caSecret $x.caConfigMap }}
{{- fail "kafka.externalSecurity: set caSecret or caConfigMap, not both" }}
{{- end }}
{{- if and (or $x.caSecret $x.caConfigMap) (not (hasSuffix "SSL" $x.protocol)) }}
{{- fail (printf "kafka.externalSecurity: a CA needs protocol SSL or SASL_SSL, not %s" $x.protocol) }}
{{- end }}
KAFKA_SECURITY_PROTOCOL: {{ $x.protocol }}
{{- if hasPrefix "SASL_" $x.protocol }}
KAFKA_SASL_MECHANISM: {{ $x.saslMechanism }}
{{- end }}
{{- if include "gostream.kafka.hasCa" . }}
KAFKA_SSL_CAFILE: {{ include "gostream.kafka.caDir" . }}/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* Env entries from Secrets (YAML list; may be empty). */}}
{{- define "gostream.kafka.securityEnv" -}}
{{- $x := .root.Values.kafka.externalSecurity }}
{{- if include "gostream.kafka.secure" .root }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "gostream.componentName" . }}
      key: password
{{- else if and (not .root.Values.kafka.strimzi.enabled) (hasPrefix "SASL_" $x.protocol) }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $x.credentialsSecret }}
      key: {{ $x.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $x.credentialsSecret }}
      key: {{ $x.passwordKey }}
{{- end }}
{{- end }}

{{/* The CA volume (YAML list; may be empty); its one file is always ca.crt. */}}
{{- define "gostream.kafka.caVolumes" -}}
{{- $x := .root.Values.kafka.externalSecurity }}
{{- if include "gostream.kafka.secure" .root }}
- name: kafka-ca
  secret:
    secretName: {{ include "gostream.kafka.clusterName" .root }}-cluster-ca-cert
    items:
      - key: ca.crt
        path: ca.crt
{{- else if include "gostream.kafka.hasCa" . }}
- name: kafka-ca
  {{- if $x.caSecret }}
  secret:
    secretName: {{ $x.caSecret }}
  {{- else }}
  configMap:
    name: {{ $x.caConfigMap }}
  {{- end }}
    items:
      - key: {{ $x.caKey }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "gostream.kafka.caVolumeMounts" -}}
{{- if include "gostream.kafka.hasCa" . }}
- name: kafka-ca
  mountPath: {{ include "gostream.kafka.caDir" . }}
  readOnly: true
{{- end }}
{{- end }}
