{{/* Names and labels, as `helm create` makes them. */}}
{{- define "algorithmia-datadog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "algorithmia-datadog.fullname" -}}
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

{{- define "algorithmia-datadog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "algorithmia-datadog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "algorithmia-datadog.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "algorithmia-datadog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{ include "algorithmia-datadog.ustLabels" . | trim }}
{{- end }}

{{/* Unified service tagging labels (only those with a value). */}}
{{- define "algorithmia-datadog.ustLabels" -}}
{{- with .Values.datadog.env }}
tags.datadoghq.com/env: {{ . | quote }}
{{- end }}
{{- with .Values.datadog.service }}
tags.datadoghq.com/service: {{ . | quote }}
{{- end }}
tags.datadoghq.com/version: {{ include "algorithmia-datadog.version" . | quote }}
{{- end }}

{{- define "algorithmia-datadog.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "algorithmia-datadog.version" -}}
{{- default (include "algorithmia-datadog.imageTag" .) .Values.datadog.version }}
{{- end }}

{{- define "algorithmia-datadog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "algorithmia-datadog.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the SASL password, or "" when there is none. */}}
{{- define "algorithmia-datadog.saslSecretName" -}}
{{- if .Values.kafka.sasl.existingSecret }}
{{- .Values.kafka.sasl.existingSecret }}
{{- else if .Values.kafka.sasl.password }}
{{- include "algorithmia-datadog.fullname" . }}-kafka
{{- end }}
{{- end }}

{{- define "algorithmia-datadog.saslSecretKey" -}}
{{- if .Values.kafka.sasl.existingSecret }}
{{- .Values.kafka.sasl.existingSecretKey }}
{{- else }}
{{- "password" }}
{{- end }}
{{- end }}

{{/* The autoscaler's upper bound: at most the topic's partitions. */}}
{{- define "algorithmia-datadog.maxReplicas" -}}
{{- $partitions := int .Values.kafka.partitions }}
{{- $max := int (default $partitions .Values.autoscaling.maxReplicas) }}
{{- if gt $max $partitions }}
{{- fail (printf "autoscaling.maxReplicas (%d) is above kafka.partitions (%d): consumers beyond the topic's partitions sit idle" $max $partitions) }}
{{- end }}
{{- $max }}
{{- end }}

{{/* The first instance, which the autoscalers read the lag of. */}}
{{- define "algorithmia-datadog.scaledInstance" -}}
{{- if ne (len .Values.config.instances) 1 }}
{{- fail "autoscaling needs exactly one entry in config.instances (one topic and consumer group to read the lag of)" }}
{{- end }}
{{- toYaml (index .Values.config.instances 0) }}
{{- end }}

{{/*
Checks across values that the schema cannot express, then the rendered algorithmia.yaml:
the user's init_config plus health_address, and with static membership each instance's
kafka_options["group.instance.id"].
*/}}
{{- define "algorithmia-datadog.config" -}}
{{- if gt (int .Values.replicaCount) (int .Values.kafka.partitions) }}
{{- fail (printf "replicaCount (%d) is above kafka.partitions (%d): consumers beyond the topic's partitions sit idle" (int .Values.replicaCount) (int .Values.kafka.partitions)) }}
{{- end }}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.datadog.enabled }}
{{- fail "enable at most one of autoscaling.keda and autoscaling.datadog" }}
{{- end }}
{{- if and .Values.kafka.sasl.existingSecret .Values.kafka.sasl.password }}
{{- fail "set kafka.sasl.existingSecret or kafka.sasl.password, not both" }}
{{- end }}
{{- $init := deepCopy (default dict .Values.config.init_config) }}
{{- if hasKey $init "dogstatsd_url" }}
{{- fail "config.init_config.dogstatsd_url: set agent.mode (socket, hostip or url) instead" }}
{{- end }}
{{- if hasKey $init "health_address" }}
{{- fail "config.init_config.health_address: set health.bindAddress and health.port instead" }}
{{- end }}
{{- $host := .Values.health.bindAddress }}
{{- if contains ":" $host }}
{{- $host = printf "[%s]" $host }}
{{- end }}
{{- $_ := set $init "health_address" (printf "%s:%d" $host (int .Values.health.port)) }}
{{- $instances := list }}
{{- $groups := dict }}
{{- range $i, $instance := .Values.config.instances }}
{{- $copy := deepCopy $instance }}
{{- if and (hasKey $copy "sasl_mechanism") (not (include "algorithmia-datadog.saslSecretName" $)) }}
{{- fail (printf "config.instances[%d] uses SASL: set kafka.sasl.existingSecret or kafka.sasl.password (read as ${KAFKA_PASSWORD})" $i) }}
{{- end }}
{{- if $.Values.staticMembership.enabled }}
{{- $group := default "algorithmia-datadog" $copy.consumer_group }}
{{- if hasKey $groups $group }}
{{- fail (printf "staticMembership: config.instances[%d] shares consumer group %s with another instance; one instance id would then be two members" $i $group) }}
{{- end }}
{{- $_ := set $groups $group true }}
{{- $options := deepCopy (default dict $copy.kafka_options) }}
{{- $_ := set $options "group.instance.id" $.Values.staticMembership.instanceId }}
{{- $_ := set $copy "kafka_options" $options }}
{{- end }}
{{- $instances = append $instances $copy }}
{{- end }}
{{- toYaml (dict "init_config" $init "instances" $instances) }}
{{- end }}
