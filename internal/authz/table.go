package authz

import (
	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	clusterv1 "github.com/flotilla-vm/flotilla/proto/flotilla/cluster/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Role sets used by the table.
var (
	readers   = []Role{Admin, Operator, Viewer}
	operators = []Role{Admin, Operator}
	admins    = []Role{Admin}
	everyone  = []Role{Admin, Operator, Viewer, Agent, Coordinator}
)

// Table is the one authorization table: every gRPC method a Flotilla
// process serves (coordinators and agents), and the roles that may call
// it. A method not in it is refused to everyone; a test walks every method
// the servers register against it, and docs/security.md is generated from it.
var Table = map[string][]Role{
	// Instances and operations: operators, each within the projects its
	// certificate names (Principal.Sees, checked by the API on every
	// instance and operation). Reads: viewers too.
	pb.InstanceService_CreateInstance_FullMethodName:   operators,
	pb.InstanceService_GetInstance_FullMethodName:      readers,
	pb.InstanceService_ListInstances_FullMethodName:    readers,
	pb.InstanceService_WatchInstances_FullMethodName:   readers,
	pb.InstanceService_StartInstance_FullMethodName:    operators,
	pb.InstanceService_StopInstance_FullMethodName:     operators,
	pb.InstanceService_RestartInstance_FullMethodName:  operators,
	pb.InstanceService_PauseInstance_FullMethodName:    operators,
	pb.InstanceService_UnpauseInstance_FullMethodName:  operators,
	pb.InstanceService_SuspendInstance_FullMethodName:  operators,
	pb.InstanceService_ResumeInstance_FullMethodName:   operators,
	pb.InstanceService_DeleteInstance_FullMethodName:   operators,
	pb.InstanceService_UpdateInstance_FullMethodName:   operators,
	pb.InstanceService_ResizeInstance_FullMethodName:   operators,
	pb.InstanceService_ConfirmResize_FullMethodName:    operators,
	pb.InstanceService_RevertResize_FullMethodName:     operators,
	pb.InstanceService_ExtendInstance_FullMethodName:   operators,
	pb.InstanceService_MoveInstance_FullMethodName:     operators,
	pb.InstanceService_MarkOperational_FullMethodName:  operators,
	pb.InstanceService_SetPassword_FullMethodName:      operators,
	pb.InstanceService_RebuildInstance_FullMethodName:  operators,
	pb.InstanceService_RescueInstance_FullMethodName:   operators,
	pb.InstanceService_UnrescueInstance_FullMethodName: operators,
	pb.InstanceService_BundleInstance_FullMethodName:   operators,
	pb.OperationService_GetOperation_FullMethodName:    readers,
	pb.OperationService_ListOperations_FullMethodName:  readers,
	pb.OperationService_WaitOperation_FullMethodName:   readers,
	pb.OperationService_CancelOperation_FullMethodName: operators,
	pb.UsageService_GetInstanceUsage_FullMethodName:    readers,
	// Instances and operations: operators (a project scope will narrow
	// this; see Scope). Reads: viewers too.
	pb.InstanceService_DeallocateInstance_FullMethodName: operators,
	pb.InstanceService_RestoreInstance_FullMethodName:    operators,
	pb.InstanceService_UpgradeInstance_FullMethodName:    operators,

	// Hosts and networks are the fleet's: admins change them.
	pb.HostService_ListHosts_FullMethodName:        readers,
	pb.HostService_GetHost_FullMethodName:          readers,
	pb.HostService_CordonHost_FullMethodName:       admins,
	pb.HostService_UncordonHost_FullMethodName:     admins,
	pb.HostService_DrainHost_FullMethodName:        admins,
	pb.HostService_RemoveHost_FullMethodName:       admins,
	pb.NetworkService_CreateNetwork_FullMethodName: admins,
	pb.NetworkService_GetNetwork_FullMethodName:    readers,
	pb.NetworkService_ListNetworks_FullMethodName:  readers,
	pb.NetworkService_DeleteNetwork_FullMethodName: admins,
	pb.ImageService_ListImages_FullMethodName:      readers,
	pb.ImageService_GetImage_FullMethodName:        readers,
	pb.ImageService_ImportImage_FullMethodName:     admins,
	pb.ImageService_DeleteImage_FullMethodName:     admins,

	// Projects: admins write; readers see the projects they belong to.
	pb.ProjectService_CreateProject_FullMethodName:   admins,
	pb.ProjectService_GetProject_FullMethodName:      readers,
	pb.ProjectService_ListProjects_FullMethodName:    readers,
	pb.ProjectService_UpdateProject_FullMethodName:   admins,
	pb.ProjectService_TopUpProject_FullMethodName:    admins,
	pb.ProjectService_FreezeProject_FullMethodName:   admins,
	pb.ProjectService_UnfreezeProject_FullMethodName: admins,

	// Membership and snapshots: admins. A coordinator joins through
	// AddServer with its own certificate, and asks others their status
	// (the log version gate).
	pb.ClusterService_AddServer_FullMethodName:     {Admin, Coordinator},
	pb.ClusterService_RemoveServer_FullMethodName:  admins,
	pb.ClusterService_ListServers_FullMethodName:   readers,
	pb.ClusterService_GetNodeStatus_FullMethodName: {Admin, Operator, Viewer, Coordinator},
	pb.ClusterService_TakeSnapshot_FullMethodName:  admins,

	// Followers relay writes to the leader (each relayed call is then
	// checked again against its original caller).
	clusterv1.RelayService_Relay_FullMethodName: {Coordinator},

	// An agent's session (the agent link also checks that the
	// certificate names the host) and disk pulls between agents (the
	// source also checks the certificate names the host it offered to).
	agentv1.AgentService_Connect_FullMethodName:      {Agent},
	agentv1.AgentPeerService_PullDisk_FullMethodName: {Agent},

	// Health and reflection.
	grpc_health_v1.Health_Check_FullMethodName:                             everyone,
	grpc_health_v1.Health_Watch_FullMethodName:                             everyone,
	grpc_health_v1.Health_List_FullMethodName:                              everyone,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      readers,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: readers,
}
