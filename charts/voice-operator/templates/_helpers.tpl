{{/* Full name of the release's objects. */}}
{{- define "voice-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "voice-operator.serviceAccountName" -}}
{{- default (include "voice-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "voice-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator as a subject of bindings. */}}
{{- define "voice-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "voice-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
