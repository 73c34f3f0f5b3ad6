{{- define "bifrost.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bifrost.labels" -}}
app.kubernetes.io/name: bifrost
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: bifrost
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bifrost.selectorLabels" -}}
app.kubernetes.io/name: bifrost
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "bifrost.runnerNamespace" -}}
{{- .Values.runner.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "bifrost.publicUrl" -}}
{{- .Values.publicUrl | default (printf "http://%s.%s.svc:%v" (include "bifrost.fullname" .) .Release.Namespace .Values.service.port) -}}
{{- end -}}
