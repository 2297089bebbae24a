{{/*
The chart's name, truncated to a DNS label.
*/}}
{{- define "flotilla-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects.
*/}}
{{- define "flotilla-hub.fullname" -}}
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

{{- define "flotilla-hub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla-hub.labels" -}}
helm.sh/chart: {{ include "flotilla-hub.chart" . }}
{{ include "flotilla-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | quote }}
app.kubernetes.io/component: hub
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flotilla-hub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the volume is mounted, and the data directory inside it (see values.yaml). */}}
{{- define "flotilla-hub.dataDir" -}}/var/lib/flotilla/data{{- end }}

{{- define "flotilla-hub.webhookSecret" -}}
{{- if .Values.webhook.existingSecret }}
{{- .Values.webhook.existingSecret }}
{{- else if .Values.webhook.secret }}
{{- printf "%s-webhook" (include "flotilla-hub.fullname" .) }}
{{- end }}
{{- end }}

{{- define "flotilla-hub.databaseSecret" -}}
{{- if .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecret }}
{{- else if .Values.externalDatabase.url }}
{{- printf "%s-database" (include "flotilla-hub.fullname" .) }}
{{- end }}
{{- end }}

{{/* The agent API Service's in-cluster DNS names, for its server certificate. */}}
{{- define "flotilla-hub.agentServiceNames" -}}
{{- $svc := printf "%s-agent-api" (include "flotilla-hub.fullname" .) }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}
