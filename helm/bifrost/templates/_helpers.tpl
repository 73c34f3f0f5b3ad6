{{- define "bifrost.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bifrost.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "bifrost.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The labels of every object; `component` is the part it belongs to. */}}
{{- define "bifrost.componentLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "bifrost.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: bifrost
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version }}
{{- end -}}

{{- define "bifrost.componentSelector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "bifrost.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "bifrost.labels" -}}
{{- include "bifrost.componentLabels" (list . "control-plane") -}}
{{- end -}}

{{- define "bifrost.selectorLabels" -}}
{{- include "bifrost.componentSelector" (list . "control-plane") -}}
{{- end -}}

{{- define "bifrost.runnerNamespace" -}}
{{- .Values.runner.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "bifrost.publicUrl" -}}
{{- .Values.publicUrl | default (printf "http://%s.%s.svc:%v" (include "bifrost.fullname" .) .Release.Namespace .Values.service.port) -}}
{{- end -}}

{{- define "bifrost.natsName" -}}
{{- printf "%s-nats" (include "bifrost.fullname" . | trunc 58 | trimSuffix "-") -}}
{{- end -}}

{{- define "bifrost.postgresqlName" -}}
{{- printf "%s-postgresql" (include "bifrost.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}

{{- define "bifrost.generatedSecret" -}}
{{- printf "%s-generated" (include "bifrost.fullname" . | trunc 53 | trimSuffix "-") -}}
{{- end -}}

{{- define "bifrost.natsUrl" -}}
{{- .Values.nats.url | default (printf "nats://%s.%s.svc:4222" (include "bifrost.natsName" .) .Release.Namespace) -}}
{{- end -}}

{{- define "bifrost.runnerServiceAccount" -}}
{{- if .Values.runner.serviceAccount.create -}}
{{- .Values.runner.serviceAccount.name | default (printf "%s-runner" (include "bifrost.fullname" . | trunc 56 | trimSuffix "-")) -}}
{{- else -}}
{{- .Values.runner.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where a Secret value comes from: [secret name, key]. Empty existingSecret: the chart's generated Secret. */}}
{{- define "bifrost.secretRef" -}}
{{- $ := index . 0 -}}
{{- $value := index . 1 -}}
{{- $generatedKey := index . 2 -}}
name: {{ $value.existingSecret | default (include "bifrost.generatedSecret" $) }}
key: {{ ternary $value.key $generatedKey (ne $value.existingSecret "") }}
{{- end -}}

{{/* The image of a `{repository, tag, pullPolicy}` value; the tag defaults to the chart's appVersion. */}}
{{- define "bifrost.image" -}}
{{- $ := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository ($image.tag | default $.Chart.AppVersion) -}}
{{- end -}}

{{/* The Secrets the pods read: the generated one as rendered, the given ones as they are in the cluster now
(`helm upgrade` after changing one rolls the pods). */}}
{{- define "bifrost.secretsChecksum" -}}
{{- $names := list .Values.database.existingSecret .Values.secretKey.existingSecret .Values.encryptionKeys.existingSecret .Values.bootstrapApiKey.existingSecret .Values.nats.accountSeed.existingSecret .Values.s3.existingSecret -}}
{{- $data := dict "generated" (include (print .Template.BasePath "/secret.yaml") .) -}}
{{- range $name := $names | compact | uniq -}}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace $name -}}
{{- $_ := set $data $name ($secret.data | default dict) -}}
{{- end -}}
{{- $data | toJson | sha256sum -}}
{{- end -}}
