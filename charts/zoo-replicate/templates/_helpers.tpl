{{/*
Helpers of the zoo-replicate chart. The chart installs the nightly CronJob, its RBAC and the
volumes; the RayJob itself has one author, replicate/k8s/manifest.py, which the CronJob's pod
runs (`replicate k8s submit`).
*/}}

{{- define "zoo-replicate.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "zoo-replicate.labels" -}}
app.kubernetes.io/name: zoo-replicate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "zoo-replicate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "zoo-replicate.name" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "zoo-replicate.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Pod Security Standard "restricted" plus a read-only root; UID 1000 is the image's user. */}}
{{- define "zoo-replicate.securityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "zoo-replicate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* minReplicas > maxReplicas fails the install, not a night months later. Python refuses it for
the groups a suite needs (replicate/k8s/manifest.py _group_values); Helm cannot know which
those are, so every group is checked. */}}
{{- define "zoo-replicate.checkWorkerGroups" -}}
{{- range $name, $g := .Values.workerGroups }}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) }}
{{- fail (printf "workerGroups.%s.minReplicas: %d is more than maxReplicas %d" $name (int $g.minReplicas) (int $g.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end -}}
