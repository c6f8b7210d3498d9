{{/* Names, labels and small shared pieces of the gpu-aiops chart. */}}

{{- define "gpu-aiops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-<chart> unless the release name already contains it. */}}
{{- define "gpu-aiops.fullname" -}}
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

{{- define "gpu-aiops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpu-aiops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpu-aiops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gpu-aiops.labels" -}}
helm.sh/chart: {{ include "gpu-aiops.chart" . }}
{{ include "gpu-aiops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpu-aiops
{{- end }}

{{- define "gpu-aiops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gpu-aiops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The coordination.k8s.io Lease the replicas elect a leader with. */}}
{{- define "gpu-aiops.leaseName" -}}
{{- printf "%s-leader" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpu-aiops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The training CronJob's image: training.image, else the agent's. */}}
{{- define "gpu-aiops.trainingImage" -}}
{{- if .Values.training.image.repository }}
{{- printf "%s:%s" .Values.training.image.repository (default .Chart.AppVersion .Values.training.image.tag) }}
{{- else }}
{{- include "gpu-aiops.image" . }}
{{- end }}
{{- end }}

{{- define "gpu-aiops.claimName" -}}
{{- default (printf "%s-state" (include "gpu-aiops.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "gpu-aiops.placeholderNamespace" -}}
{{- default .Release.Namespace .Values.placeholders.namespace }}
{{- end }}

{{/* Namespaces of the scaled workloads, one per line (the release namespace when none is listed). */}}
{{- define "gpu-aiops.workloadNamespaces" -}}
{{- $namespaces := .Values.rbac.namespaces | default (list .Release.Namespace) }}
{{- range ($namespaces | uniq) }}
{{ . }}
{{- end }}
{{- end }}

{{/* Environment variables set from existing Secrets: secretKeyRef only, never a value. */}}
{{- define "gpu-aiops.secretEnv" -}}
{{- $slack := .Values.secrets.slack }}
{{- if $slack.existingSecret }}
{{- range $var, $key := dict "AIOPS_SLACK_BOT_TOKEN" $slack.botTokenKey "AIOPS_SLACK_WEBHOOK_URL" $slack.webhookUrlKey "AIOPS_SLACK_SIGNING_SECRET" $slack.signingSecretKey }}
{{- if $key }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $slack.existingSecret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- end }}
{{- $hook := .Values.secrets.webhook }}
{{- if $hook.existingSecret }}
{{- range $var, $key := dict "AIOPS_WEBHOOK_URL" $hook.urlKey "AIOPS_WEBHOOK_SECRET" $hook.secretKey }}
{{- if $key }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $hook.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.notifications.slackChannel }}
- name: AIOPS_SLACK_CHANNEL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.notifications.alertmanagerUrl }}
- name: AIOPS_ALERTMANAGER_URL
  value: {{ . | quote }}
{{- end }}
{{- include "gpu-aiops.prometheusTokenEnv" . }}
{{- with .Values.secrets.approval }}
{{- if and .existingSecret .key }}
- name: AIOPS_APPROVAL_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gpu-aiops.prometheusTokenEnv" -}}
{{- with .Values.secrets.prometheus }}
{{- if and .existingSecret .tokenKey }}
- name: PROMETHEUS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .tokenKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fail on values that render but could not work. */}}
{{- define "gpu-aiops.checks" -}}
{{- $prom := .Values.secrets.prometheus }}
{{- if and $prom.existingSecret $prom.tokenKey }}
{{- $env := dig "prometheus" "bearer_token_env" "" .Values.config }}
{{- if ne $env "PROMETHEUS_TOKEN" }}
{{- fail "secrets.prometheus.existingSecret is set, so set config.prometheus.bearer_token_env: PROMETHEUS_TOKEN (the variable the chart sets from that Secret)" }}
{{- end }}
{{- end }}
{{- if and .Values.training.enabled (not .Values.persistence.enabled) }}
{{- fail "training.enabled needs persistence.enabled: the CronJob writes models to the registry volume the agent reads" }}
{{- end }}
{{- end }}
