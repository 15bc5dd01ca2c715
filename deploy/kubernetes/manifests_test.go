package kubernetes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// clusterSPIFFEID mirrors spire-controller-manager's
// spire.spiffe.io/v1alpha1 ClusterSPIFFEID (api/v1alpha1/clusterspiffeid_types.go),
// whose Go module is not among the ones this project pulls in: the same
// JSON field names, so that strict decoding rejects what the CRD would.
type clusterSPIFFEID struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		SPIFFEIDTemplate          string                `json:"spiffeIDTemplate"`
		Hint                      string                `json:"hint,omitempty"`
		TTL                       metav1.Duration       `json:"ttl,omitempty"`
		JWTTTL                    metav1.Duration       `json:"jwtTtl,omitempty"`
		DNSNameTemplates          []string              `json:"dnsNameTemplates,omitempty"`
		WorkloadSelectorTemplates []string              `json:"workloadSelectorTemplates,omitempty"`
		NamespaceSelector         *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
		PodSelector               *metav1.LabelSelector `json:"podSelector,omitempty"`
		FederatesWith             []string              `json:"federatesWith,omitempty"`
		Downstream                bool                  `json:"downstream,omitempty"`
		AutoPopulateDNSNames      bool                  `json:"autoPopulateDNSNames,omitempty"`
		Fallback                  bool                  `json:"fallback,omitempty"`
		Admin                     bool                  `json:"admin,omitempty"`
		ClassName                 string                `json:"className,omitempty"`
	} `json:"spec"`
}

// kustomization is the part of kustomize's Kustomization these manifests use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// manifests is every object of the kustomization, decoded.
type manifests struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	configMaps      []corev1.ConfigMap
	deployments     []appsv1.Deployment
	services        []corev1.Service
	spiffeIDs       []clusterSPIFFEID
}

var services = map[string]int32{"gateway": 8443, "orders": 9001, "inventory": 9002, "payments": 9003}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func strict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := decodeStrict(doc, into); err != nil {
		t.Fatalf("%s: strict decode into %T: %v", where, into, err)
	}
}

// decodeStrict decodes YAML as the API server does in strict field
// validation: through JSON, with sigs.k8s.io/json, which matches field names
// case-sensitively (encoding/json would accept "spiffeIdTemplate") and
// reports unknown and duplicate fields.
func decodeStrict(doc []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, into)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func load(t *testing.T) manifests {
	t.Helper()
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	strict(t, "kustomization.yaml", data, &k)
	files, _ := filepath.Glob("*.yaml")
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	if !slices.Equal(sorted(k.Resources), sorted(files)) {
		t.Errorf("kustomization resources %v, want every manifest here %v", k.Resources, files)
	}
	var m manifests
	for _, f := range k.Resources {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := f + " document " + string(rune('0'+i))
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				var o corev1.Namespace
				strict(t, where, []byte(doc), &o)
				m.namespaces = append(m.namespaces, o)
			case "v1 ServiceAccount":
				var o corev1.ServiceAccount
				strict(t, where, []byte(doc), &o)
				m.serviceAccounts = append(m.serviceAccounts, o)
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				strict(t, where, []byte(doc), &o)
				m.configMaps = append(m.configMaps, o)
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				strict(t, where, []byte(doc), &o)
				m.deployments = append(m.deployments, o)
			case "v1 Service":
				var o corev1.Service
				strict(t, where, []byte(doc), &o)
				m.services = append(m.services, o)
			case "spire.spiffe.io/v1alpha1 ClusterSPIFFEID":
				var o clusterSPIFFEID
				strict(t, where, []byte(doc), &o)
				m.spiffeIDs = append(m.spiffeIDs, o)
			default:
				t.Fatalf("%s: unexpected kind %s %s", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestStrictDecodingRejectsUnknownFields proves the decoder used above
// would catch a typo.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	t.Parallel()
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  replica: 2\n")
	var d appsv1.Deployment
	if err := decodeStrict(doc, &d); err == nil || !strings.Contains(err.Error(), `unknown field "spec.replica"`) {
		t.Errorf("err = %v, want unknown field spec.replica", err)
	}
	var c clusterSPIFFEID
	if err := decodeStrict([]byte("apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterSPIFFEID\nspec: {spiffeIdTemplate: x}\n"), &c); err == nil {
		t.Error("a misspelt ClusterSPIFFEID field decoded")
	}
}

// TestManifests checks the objects against the design: one namespace, one
// service account per service, each Deployment running as its account with
// the Workload API socket from the SPIFFE CSI driver, the policy from the
// ConfigMap, hardened, probed by `shop healthcheck`.
func TestManifests(t *testing.T) {
	t.Parallel()
	m := load(t)
	if len(m.namespaces) != 1 || m.namespaces[0].Name != "shop" {
		t.Fatalf("namespaces = %v, want shop", m.namespaces)
	}
	var sas []string
	for _, sa := range m.serviceAccounts {
		if sa.Namespace != "shop" {
			t.Errorf("service account %s in namespace %q", sa.Name, sa.Namespace)
		}
		sas = append(sas, sa.Name)
	}
	if want := []string{"gateway", "inventory", "orders", "payments"}; !slices.Equal(sorted(sas), want) {
		t.Errorf("service accounts = %v, want %v", sas, want)
	}
	if len(m.deployments) != 4 || len(m.services) != 4 {
		t.Fatalf("%d deployments, %d services, want 4 of each", len(m.deployments), len(m.services))
	}
	for _, svc := range m.services {
		port, ok := services[svc.Name]
		if !ok || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port || svc.Spec.Selector["app.kubernetes.io/name"] != svc.Name {
			t.Errorf("service %s: %+v", svc.Name, svc.Spec)
		}
	}
	for _, d := range m.deployments {
		name := d.Name
		port := services[name]
		spec := d.Spec.Template.Spec
		if d.Namespace != "shop" || spec.ServiceAccountName != name {
			t.Errorf("%s: namespace %q, service account %q: want shop, %s", name, d.Namespace, spec.ServiceAccountName, name)
		}
		if d.Spec.Template.Labels["app.kubernetes.io/part-of"] != "trustmesh" {
			t.Errorf("%s: pod lacks the label the ClusterSPIFFEID selects", name)
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: pod does not run as a non-root user", name)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if !slices.Equal(c.Command, []string{"shop", "serve", name}) {
			t.Errorf("%s: command %v", name, c.Command)
		}
		if len(c.Ports) != 2 || c.Ports[0].Name != "grpc" || c.Ports[0].ContainerPort != port ||
			c.Ports[1].Name != "metrics" || c.Ports[1].ContainerPort != 9464 {
			t.Errorf("%s: ports %v, want grpc %d and metrics 9464", name, c.Ports, port)
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: container security context %+v", name, sc)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		// Its own metrics for Prometheus, on the pod's address (autoexport's
		// default host is localhost, which nothing outside the pod reaches).
		if env["OTEL_METRICS_EXPORTER"] != "prometheus" || env["OTEL_EXPORTER_PROMETHEUS_HOST"] != "0.0.0.0" ||
			(env["OTEL_EXPORTER_PROMETHEUS_PORT"] != "" && env["OTEL_EXPORTER_PROMETHEUS_PORT"] != "9464") {
			t.Errorf("%s: OTEL_METRICS_EXPORTER %q on %q:%q, want prometheus on 0.0.0.0:9464", name,
				env["OTEL_METRICS_EXPORTER"], env["OTEL_EXPORTER_PROMETHEUS_HOST"], env["OTEL_EXPORTER_PROMETHEUS_PORT"])
		}
		if a := d.Spec.Template.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "9464" || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: pod annotations %v, want prometheus.io/scrape, port 9464, path /metrics", name, a)
		}
		mounts := map[string]corev1.VolumeMount{}
		for _, vm := range c.VolumeMounts {
			mounts[vm.Name] = vm
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		// The Workload API socket: SPIFFE CSI driver, read-only.
		sock := strings.TrimPrefix(env["SPIFFE_ENDPOINT_SOCKET"], "unix://")
		wl, ok := volumes["spiffe-workload-api"]
		if !ok || wl.CSI == nil || wl.CSI.Driver != "csi.spiffe.io" || wl.CSI.ReadOnly == nil || !*wl.CSI.ReadOnly {
			t.Errorf("%s: no read-only csi.spiffe.io volume", name)
		}
		if mp := mounts["spiffe-workload-api"]; !mp.ReadOnly || filepath.Dir(sock) != mp.MountPath {
			t.Errorf("%s: SPIFFE_ENDPOINT_SOCKET %q is not in the CSI mount %q", name, env["SPIFFE_ENDPOINT_SOCKET"], mp.MountPath)
		}
		// The policy: a ConfigMap volume (not subPath, which would stop updates).
		pv, ok := volumes["policy"]
		if !ok || pv.ConfigMap == nil || pv.ConfigMap.Name != "shop-policy" {
			t.Errorf("%s: no policy ConfigMap volume", name)
		}
		if mp := mounts["policy"]; mp.SubPath != "" || filepath.Join(mp.MountPath, "policy.yaml") != env["SHOP_POLICY"] {
			t.Errorf("%s: SHOP_POLICY %q vs mount %+v (a subPath mount never sees updates)", name, env["SHOP_POLICY"], mp)
		}
		for other, p := range services {
			want := other + ".shop.svc:" + itoa(p)
			if got := env["SHOP_"+strings.ToUpper(other)+"_ADDR"]; got != want {
				t.Errorf("%s: SHOP_%s_ADDR = %q, want %q", name, strings.ToUpper(other), got, want)
			}
		}
		if env["SHOP_HEALTHCHECK_NAME"] != name || env["SHOP_HEALTHCHECK_ADDR"] != "127.0.0.1:"+itoa(port) {
			t.Errorf("%s: health check env %q %q", name, env["SHOP_HEALTHCHECK_NAME"], env["SHOP_HEALTHCHECK_ADDR"])
		}
		for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, []string{"shop", "healthcheck"}) {
				t.Errorf("%s: %s probe is not `shop healthcheck`", name, kind)
			}
		}
	}
}

// TestSPIFFEIDsMatchPolicy expands the ClusterSPIFFEID template for each
// Deployment's pod and checks the result is the ID the policy gives that
// service, and that every workload ID the policy names has a pod here.
func TestSPIFFEIDsMatchPolicy(t *testing.T) {
	t.Parallel()
	m := load(t)
	if len(m.spiffeIDs) != 1 {
		t.Fatalf("%d ClusterSPIFFEIDs, want 1", len(m.spiffeIDs))
	}
	spec := m.spiffeIDs[0].Spec
	if spec.SPIFFEIDTemplate != "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}" {
		t.Errorf("spiffeIDTemplate = %q, want the ns/NAMESPACE/sa/SERVICEACCOUNT shape", spec.SPIFFEIDTemplate)
	}
	policy, err := os.ReadFile(filepath.Join(repoRoot(t), "services", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, id := range regexp.MustCompile(`spiffe://shop\.example/ns/shop/sa/[a-z0-9-]+`).FindAllString(string(policy), -1) {
		named[id] = true
	}
	implied := map[string]bool{}
	for _, d := range m.deployments {
		pod := d.Spec.Template
		if !matches(spec.PodSelector, pod.Labels) || !matches(spec.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": d.Namespace}) {
			t.Errorf("%s: the ClusterSPIFFEID does not select its pods", d.Name)
			continue
		}
		r := strings.NewReplacer("{{ .TrustDomain }}", "shop.example", "{{ .PodMeta.Namespace }}", d.Namespace,
			"{{ .PodSpec.ServiceAccountName }}", pod.Spec.ServiceAccountName)
		id := r.Replace(spec.SPIFFEIDTemplate)
		implied[id] = true
		if want := "spiffe://shop.example/ns/shop/sa/" + d.Name; id != want {
			t.Errorf("%s gets %s, want %s", d.Name, id, want)
		}
		if !named[id] {
			t.Errorf("%s: the policy never names %s", d.Name, id)
		}
	}
	for id := range named {
		if !implied[id] {
			t.Errorf("the policy names %s, which no Deployment here runs as", id)
		}
	}
}

// TestPolicyConfigMapIsFresh checks the ConfigMap carries services/policy.yaml
// byte for byte.
func TestPolicyConfigMapIsFresh(t *testing.T) {
	t.Parallel()
	m := load(t)
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "services", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.configMaps) != 1 || m.configMaps[0].Name != "shop-policy" {
		t.Fatalf("config maps = %v, want shop-policy", m.configMaps)
	}
	if got := m.configMaps[0].Data["policy.yaml"]; !bytes.Equal([]byte(got), want) {
		t.Errorf("deploy/kubernetes/policy-configmap.yaml is stale: run `make k8s-policy`")
	}
}

func matches(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil {
		return true
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return len(sel.MatchExpressions) == 0
}

func itoa(i int32) string {
	b, _ := yaml.Marshal(i)
	return strings.TrimSpace(string(b))
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
